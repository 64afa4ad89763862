"""`spapi-proxy demo`: the proxy in front of the offline emulator, one process, one event loop.

The emulator listens on a private, OS-assigned loopback port and plays Amazon: LWA issues the
token, STS the temporary keys, and the sandbox checks both (SigV4 included) on every request.
The proxy is configured in code with the emulator's demo credentials, so nothing is needed
from the user's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TextIO

import aiohttp
from aiohttp import web

from proxy.config.settings import (
    AwsSettings,
    ListenSettings,
    LwaSettings,
    Settings,
    UpstreamSettings,
)
from proxy.emulator import EMULATOR_STATE, EmulatorConfig, create_emulator_app
from proxy.observability.redact import Redactor
from proxy.secret import Secret
from proxy.server.app import create_app
from proxy.server.run import start_server

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# The emulator's STS accepts any well-formed role ARN; this one only names what it stands for.
DEMO_ROLE_ARN = "arn:aws:iam::123456789012:role/spapi-emulator"
SAMPLE_TARGET = "/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"
READY_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 5.0


class DemoError(Exception):
    """The demo could not start; the message says why in words the user can act on."""


def demo_settings(emulator_url: str, emulator: EmulatorConfig, port: int) -> Settings:
    """The proxy's settings: LWA, STS and SP-API all at the emulator, signing on."""
    return Settings(
        listen=ListenSettings(host=HOST, port=port, drain_timeout_s=DRAIN_TIMEOUT_S),
        upstream=UpstreamSettings(endpoint=emulator_url, timeout_s=10.0),
        lwa=LwaSettings(
            client_id=emulator.client_id,
            client_secret=Secret(emulator.client_secret),
            refresh_token=Secret(emulator.refresh_token),
            token_url=f"{emulator_url}/auth/o2/token",
        ),
        aws=AwsSettings(
            access_key_id=emulator.aws_access_key_id,
            secret_access_key=Secret(emulator.aws_secret_access_key),
            role_arn=DEMO_ROLE_ARN,
            sts_endpoint=emulator_url,
        ),
    )


async def serve_demo(
    port: int = DEFAULT_PORT,
    models_dir: str | None = None,
    *,
    redactor: Redactor | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Serve until SIGINT or SIGTERM, then drain and return. Raises DemoError if it can't start."""
    stop = asyncio.Event()
    with stopping_on_signals(stop):
        emulator_app = create_emulator_app(EmulatorConfig(models_dir=models_dir))
        emulator = emulator_app[EMULATOR_STATE]
        async with serving_emulator(emulator_app) as emulator_port:
            emulator_url = f"http://{HOST}:{emulator_port}"
            settings = demo_settings(emulator_url, emulator.config, port)
            # The same listener `spapi-proxy run` uses, limits and error shapes included.
            try:
                proxy = await start_server(
                    create_app(settings, redactor=redactor), HOST, port, DRAIN_TIMEOUT_S
                )
            except OSError as error:
                raise DemoError(cannot_listen("the proxy", HOST, port, error)) from None
            try:
                await check_ready(proxy.port)
                operations, cases = len(emulator.catalog), emulator.catalog.case_count
                print(banner(proxy.port, emulator_url, operations, cases), file=out, flush=True)
                await stop.wait()
                logger.info("Stopping: letting in-flight requests finish")
            finally:
                await proxy.stop()


@contextlib.contextmanager
def stopping_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
    except NotImplementedError:  # Windows: Ctrl+C arrives as KeyboardInterrupt instead
        pass
    try:
        yield
    finally:
        for signum in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)


@contextlib.asynccontextmanager
async def serving_emulator(app: web.Application) -> AsyncIterator[int]:
    """Serve the emulator on a free loopback port the OS picks; yield that port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=DRAIN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        try:
            await site.start()
        except OSError as error:
            raise DemoError(cannot_listen("the emulator", HOST, 0, error)) from None
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def cannot_listen(what: str, host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"{what} cannot listen on {host}:{port}: the port is already in use "
            "(another spapi-proxy?). Stop that process or choose another port with --port."
        )
    return f"{what} cannot listen on {host}:{port}: {error.strerror or type(error).__name__}."


async def check_ready(port: int) -> None:
    """Fetch the credentials once through the proxy's own ready check, so a broken set-up
    fails here with its reason rather than on the user's first request."""
    url = f"http://{HOST}:{port}/_proxy/ready"
    timeout = aiohttp.ClientTimeout(total=READY_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as response,
        ):
            if response.status == 200:
                return
            reasons = (await response.json()).get("reasons", [])
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DemoError(
            f"the proxy did not answer its ready check: {type(error).__name__}"
        ) from None
    raise DemoError("the proxy could not get credentials from the emulator: " + "; ".join(reasons))


def banner(port: int, emulator_url: str, operations: int, cases: int) -> str:
    return "\n".join(
        [
            f"spapi-proxy demo: the proxy on http://{HOST}:{port}, in front of the offline "
            f"SP-API emulator at {emulator_url}",
            f"  ({operations} operations, {cases} static cases; LWA token, STS AssumeRole and "
            "SigV4 signing all against the emulator, no Amazon credentials needed)",
            "Paste this in another terminal:",
            "",
            f"curl 'http://{HOST}:{port}{SAMPLE_TARGET}'",
            "",
            "Press Ctrl+C to stop.",
        ]
    )
