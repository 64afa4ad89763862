"""`spapi-proxy demo`: the proxy in front of the offline emulator, one process, one event loop.

The emulator listens on a private, OS-assigned loopback port and plays Amazon: LWA issues the
token, STS the temporary keys, and the sandbox checks both (SigV4 included) on every request.
The proxy is configured in code with the emulator's demo credentials, so nothing is needed
from the user's environment.

`--host` may be any address (0.0.0.0 in a container) and no client key is asked for: the demo
holds only the emulator's published credentials and reaches only the emulator, on loopback in
this same process, so a caller from elsewhere can spend no quota and learn no secret.
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
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
DEFAULT_PORT = 8000
# The emulator's STS accepts any well-formed role ARN; this one only names what it stands for.
DEMO_ROLE_ARN = "arn:aws:iam::123456789012:role/spapi-emulator"
SAMPLE_TARGET = "/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"
READY_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 5.0


class DemoError(Exception):
    """The demo could not start; the message says why in words the user can act on."""


def demo_settings(
    emulator_url: str, emulator: EmulatorConfig, port: int, host: str = HOST
) -> Settings:
    """The proxy's settings: LWA, STS and SP-API all at the emulator, signing on."""
    return Settings(
        listen=ListenSettings(
            host=host,
            port=port,
            drain_timeout_s=DRAIN_TIMEOUT_S,
            allow_unauthenticated=True,  # nothing to protect: see the module's docstring
        ),
        # The emulator is on this machine's loopback: never through a company proxy the shell's
        # HTTPS_PROXY / HTTP_PROXY may name.
        upstream=UpstreamSettings(endpoint=emulator_url, timeout_s=10.0, egress_proxy=Secret("")),
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
    *,
    redactor: Redactor | None = None,
    out: TextIO = sys.stdout,
    host: str = HOST,
    emulator_config: EmulatorConfig | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then drain and return. Raises DemoError if it can't start."""
    stop = asyncio.Event()
    with stopping_on_signals(stop):
        config = emulator_config or EmulatorConfig()
        emulator_app = create_emulator_app(config)
        emulator = emulator_app[EMULATOR_STATE]
        async with serving_emulator(emulator_app) as emulator_port:
            emulator_url = f"http://{HOST}:{emulator_port}"
            settings = demo_settings(emulator_url, emulator.config, port, host)
            # The same listener `spapi-proxy run` uses, limits and error shapes included.
            try:
                proxy = await start_server(
                    create_app(settings, redactor=redactor), host, port, DRAIN_TIMEOUT_S
                )
            except OSError as error:
                raise DemoError(cannot_listen("the proxy", host, port, error)) from None
            try:
                await check_ready(local_address(host), proxy.port)
                operations, cases = len(emulator.catalog), emulator.catalog.case_count
                text = banner(host, proxy.port, emulator_url, operations, cases)
                print(text, file=out, flush=True)
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


def local_address(host: str) -> str:
    """An address this machine can connect to the listener on (a wildcard is not one)."""
    return WILDCARD_HOSTS.get(host, host)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def check_ready(host: str, port: int) -> None:
    """Fetch the credentials once through the proxy's own ready check, so a broken set-up
    fails here with its reason rather than on the user's first request."""
    url = f"http://{url_host(host)}:{port}/_proxy/ready"
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


def banner(host: str, port: int, emulator_url: str, operations: int, cases: int) -> str:
    exposure = (
        []
        if ListenSettings(host=host).is_loopback
        else [
            f"  Listening on {host}: reachable from other machines, without a client key "
            "(the demo holds only the emulator's demo credentials)."
        ]
    )
    return "\n".join(
        [
            f"spapi-proxy demo: the proxy on http://{url_host(host)}:{port}, in front of the "
            f"offline SP-API emulator at {emulator_url}",
            f"  ({operations} operations, {cases} static cases; LWA token, STS AssumeRole and "
            "SigV4 signing all against the emulator, no Amazon credentials needed)",
            *exposure,
            "Paste this in another terminal:",
            "",
            f"curl 'http://{url_host(local_address(host))}:{port}{SAMPLE_TARGET}'",
            "",
            "Press Ctrl+C to stop.",
        ]
    )
