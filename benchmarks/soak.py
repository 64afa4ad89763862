"""Soak test: the `spapi-proxy run` process under load while its LWA and upstream misbehave.

Run as `python benchmarks/soak.py [--requests 5000] [--concurrency 50] [--max-seconds 240]
[--seed N] [--token-lifetime 1] [--quick]`. Everything stays on 127.0.0.1:

    load client ──> spapi-proxy run (subprocess) ──> fake LWA + fake SP-API (this process)

The fakes are the offline emulator on one port, so the tokens its LWA issues validate on its
SP-API side, behind a fault-injecting middleware with seeded dice: `/auth/o2/token` answers
HTTP 500 to one call in five, and every other request is either dropped (the connection closed
with no answer, 5 %) or delayed by 0-200 ms before the emulator answers it. Tokens live 1 s,
so the proxy refreshes about once a second and meets the LWA faults.

Every answer is classified: by the upstream, a documented proxy error (`x-spapi-proxy-error`
naming a code from `proxy/errors.py` with the same code in an SP-API-shaped body), hung (no
answer within the client timeout) or malformed (anything else). The proxy's RSS and open file
descriptors are read from /proc before and after the load. Exit status 0 only when nothing hung,
nothing was malformed, resources grew little and the proxy exited 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy import errors
from proxy.emulator import EmulatorConfig, create_emulator_app

HOST = "127.0.0.1"
ORDERS_TARGET = "/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"
LWA_PATH = "/auth/o2/token"
PROXY_SCRIPT = str(Path(sys.executable).parent / "spapi-proxy")
MIB = 1024 * 1024

LWA_FAILURE_RATE = 1 / 5
DROP_RATE = 0.05
MAX_DELAY_S = 0.2
# Short enough that the proxy refreshes about once a second: at a few hundred requests a second
# (the fakes delay every answer), a 3 s token gives a handful of LWA calls per quick soak and often
# no fault at all, whereas a 1 s one gives ~15 calls (a few failed), the occasional three failures
# in a row (LwaUnavailable), and tokens that expire while a delayed request is on its way
# (SP-API's 403, then the proxy's replay).
DEFAULT_TOKEN_LIFETIME_S = 1.0
CLIENT_TIMEOUT_S = 15.0  # a request without an answer by then counts as hung
# The warm-up fills the proxy's pools (client connections, upstream keep-alive connections) to
# the load's concurrency, so "before" and "after" differ by leaks rather than by pool size.
WARM_UP_REQUESTS = 50
SETTLE_S = 1.0  # lets closed connections leave the proxy's fd table before measuring
MAX_FD_GROWTH = 50
MAX_RSS_GROWTH = 50 * MIB
DRAIN_TIMEOUT_S = 5.0
MALFORMED_SAMPLES = 5
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def documented_codes() -> dict[str, int]:
    """Every error code in proxy/errors.py with its status; the base InternalError is not one."""
    found: dict[str, int] = {}
    pending: list[type[errors.ProxyError]] = [errors.ProxyError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.status != 500:
            found[cls.code] = cls.status
    return found


DOCUMENTED = documented_codes()


@dataclass(frozen=True)
class Options:
    requests: int
    concurrency: int
    max_seconds: float
    seed: int
    token_lifetime_s: float


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, help="requests to send (default 5000)")
    parser.add_argument("--concurrency", type=int, default=50, help="in flight (default 50)")
    parser.add_argument("--max-seconds", type=float, help="stop issuing after (default 240)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the fault injector")
    parser.add_argument(
        "--token-lifetime",
        type=float,
        default=DEFAULT_TOKEN_LIFETIME_S,
        help=f"seconds the fake LWA's tokens live (default {DEFAULT_TOKEN_LIFETIME_S:g})",
    )
    parser.add_argument("--quick", action="store_true", help="4000 requests within 40 s (CI)")
    args = parser.parse_args(argv)
    # --quick changes the defaults only; explicit --requests/--max-seconds still win.
    # Enough requests that the quick run lasts several token lifetimes and meets LWA's faults.
    requests = args.requests or (4000 if args.quick else 20000)
    max_seconds = args.max_seconds or (40.0 if args.quick else 240.0)
    return Options(requests, args.concurrency, max_seconds, args.seed, args.token_lifetime)


# ---- the fakes: the emulator behind a fault injector ----------------------------------------


@dataclass
class Faults:
    """The fault injector's dice and what it did. Two seeded streams, so the n-th LWA call and
    the n-th upstream request meet the same fate in every run with that seed."""

    seed: int
    lwa_calls: int = 0
    lwa_failed: int = 0
    upstream_requests: int = 0
    dropped: int = 0
    upstream_statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    lwa_dice: random.Random = field(init=False, repr=False)
    upstream_dice: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.lwa_dice = random.Random(f"lwa-{self.seed}")
        self.upstream_dice = random.Random(f"upstream-{self.seed}")

    def reset_counts(self) -> None:
        """Forget the warm-up's traffic; the dice keep rolling from where they are."""
        self.lwa_calls = self.lwa_failed = self.upstream_requests = self.dropped = 0
        self.upstream_statuses.clear()


def fault_middleware(faults: Faults) -> Middleware:
    @web.middleware
    async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == LWA_PATH:
            return await fake_lwa(request, handler, faults)
        return await fake_upstream(request, handler, faults)

    return inject


async def fake_lwa(request: web.Request, handler: Handler, faults: Faults) -> web.StreamResponse:
    faults.lwa_calls += 1
    if faults.lwa_dice.random() < LWA_FAILURE_RATE:
        faults.lwa_failed += 1
        return web.json_response({"error": "server_error"}, status=500)
    return await handler(request)


async def fake_upstream(
    request: web.Request, handler: Handler, faults: Faults
) -> web.StreamResponse:
    faults.upstream_requests += 1
    dice = faults.upstream_dice
    if dice.random() < DROP_RATE and request.transport is not None:
        faults.dropped += 1
        # FIN with no answer. Returning (rather than raising) keeps aiohttp from logging a
        # traceback; the response it then tries to write goes nowhere.
        request.transport.close()
        return web.Response(status=599)
    await asyncio.sleep(dice.uniform(0, MAX_DELAY_S))
    response = await handler(request)
    faults.upstream_statuses[response.status] += 1
    return response


async def start_fakes(faults: Faults, token_lifetime_s: float) -> tuple[web.AppRunner, str]:
    config = EmulatorConfig(
        token_lifetime_s=token_lifetime_s,
        # The sandbox's throttle would turn load into 429s; the soak is about faults, not quotas.
        rate_per_s=1e9,
        burst=10**9,
    )
    app = create_emulator_app(config)
    app.middlewares.append(fault_middleware(faults))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://{HOST}:{port}"


# ---- the proxy process ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(directory: Path, port: int, fakes_url: str) -> Path:
    path = directory / "spapi-proxy.yaml"
    path.write_text(
        f"listen: {{host: {HOST}, port: {port}, drain_timeout_s: {DRAIN_TIMEOUT_S}}}\n"
        f"upstream: {{endpoint: '{fakes_url}', timeout_s: 5}}\n"
        f"lwa: {{token_url: '{fakes_url}{LWA_PATH}', timeout_s: 2}}\n"
        # The proxy's own buckets would hold the sandbox to 5 requests a second (its headers'
        # unlimited rate is out of the range the proxy believes): the soak is about faults.
        "rate_limits: {enabled: false}\n"
    )
    path.chmod(0o600)
    return path


def proxy_environment() -> dict[str, str]:
    """The caller's environment minus anything that reconfigures the proxy, plus the
    emulator's demo credentials (not secrets)."""
    demo = EmulatorConfig()
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SPAPI_PROXY_") and name != "SPAPI_ROLE_ARN"
    }
    environ.update(
        LWA_CLIENT_ID=demo.client_id,
        LWA_CLIENT_SECRET=demo.client_secret,
        LWA_REFRESH_TOKEN=demo.refresh_token,
    )
    return environ


async def start_proxy(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            PROXY_SCRIPT,
            "run",
            "--config",
            str(config),
            env=proxy_environment(),
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )


class StartupError(Exception):
    """The proxy never became healthy; nothing was measured."""


async def wait_healthy(process: asyncio.subprocess.Process, base: str) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise StartupError(f"the proxy exited with {process.returncode} during start-up")
            try:
                async with session.get(f"{base}/_proxy/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise StartupError("the proxy did not become healthy within 20 s")


async def stop_proxy(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, then its exit code; killed (and reported as such) if it outlives its drain."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout=DRAIN_TIMEOUT_S + 10)
    except TimeoutError:
        process.kill()
        return await process.wait()  # -9 in the report says what happened


@dataclass(frozen=True)
class Resources:
    rss_bytes: int
    open_fds: int


async def settled_resources(pid: int) -> Resources:
    await asyncio.sleep(SETTLE_S)
    return resources(pid)


def resources(pid: int) -> Resources:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return Resources(rss, len(os.listdir(f"/proc/{pid}/fd")))


# ---- the load and its classification ----------------------------------------------------------

UPSTREAM, PROXY_ERROR, HUNG, MALFORMED = "upstream", "proxy error", "hung", "malformed"


class Verdict(NamedTuple):
    outcome: str
    label: str  # counted: "200", "502 UpstreamUnreachable", "ClientPayloadError", ...
    code: str = ""  # the proxy's error code, for PROXY_ERROR
    detail: str = ""  # what came back, for the hung and malformed samples


@dataclass
class Tally:
    sent: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    proxy_codes: collections.Counter[str] = field(default_factory=collections.Counter)
    by_status: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[str] = field(default_factory=list)

    def add(self, verdict: Verdict) -> None:
        self.outcomes[verdict.outcome] += 1
        self.by_status[verdict.label] += 1
        if verdict.code:
            self.proxy_codes[verdict.code] += 1
        if verdict.detail and len(self.samples) < MALFORMED_SAMPLES:
            self.samples.append(f"{verdict.outcome}: {verdict.label}: {verdict.detail}")

    @property
    def unfinished(self) -> int:
        """Sent but never classified: in flight when the run was interrupted."""
        return self.sent - sum(self.outcomes.values())


def error_codes(document: object) -> list[str] | None:
    """The codes of an SP-API error body `{"errors": [{"code", "message", ...}]}`, else None."""
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return None
    entries = document["errors"]
    shaped = all(
        isinstance(entry, dict)
        and isinstance(entry.get("code"), str)
        and isinstance(entry.get("message"), str)
        for entry in entries
    )
    return [entry["code"] for entry in entries] if entries and shaped else None


def has_orders(document: object) -> bool:
    if not isinstance(document, dict) or not isinstance(document.get("payload"), dict):
        return False
    return isinstance(document["payload"].get("Orders"), list)


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """What one complete answer was; a malformed one carries what came back, to reproduce it."""
    try:
        document: object = json.loads(body)
    except ValueError:
        document = None
    codes = error_codes(document)
    proxy_code = headers.get("x-spapi-proxy-error")
    if proxy_code is not None:
        if DOCUMENTED.get(proxy_code) == status and codes == [proxy_code]:
            return Verdict(PROXY_ERROR, f"{status} {proxy_code}", code=proxy_code)
        label = f"{status} proxy error {proxy_code}: unknown code, wrong status or other body"
        return Verdict(MALFORMED, label, detail=f"body={body[:300]!r}")
    if status == 200 and has_orders(document):
        return Verdict(UPSTREAM, "200")
    if status >= 400 and codes:
        return Verdict(UPSTREAM, f"{status} {codes[0]} (from SP-API)")
    return Verdict(MALFORMED, f"{status} unexpected body", detail=f"body={body[:300]!r}")


async def one_request(session: aiohttp.ClientSession, url: str, tally: Tally) -> None:
    tally.sent += 1
    started = time.monotonic()
    try:
        async with session.get(url) as response:
            body = await response.read()
            verdict = classify(response.status, response.headers, body)
    except TimeoutError:
        verdict = Verdict(
            HUNG, "client timeout", detail=f"no full answer in {CLIENT_TIMEOUT_S:g} s"
        )
    except aiohttp.ClientError as error:  # cut connection, truncated body, garbage
        waited = f"after {time.monotonic() - started:.2f} s"
        verdict = Verdict(MALFORMED, type(error).__name__, detail=f"{error} ({waited})")
    tally.add(verdict)


def client_session(concurrency: int) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
    )
    # aiohttp silently resends an idempotent request once when the server closes the
    # connection; that would hide a proxy that drops its clients. aiohttp's own TestClient
    # turns it off the same way.
    session._retry_connection = False
    return session


async def run_load(base: str, options: Options, total: int, tally: Tally) -> None:
    """`total` requests, `options.concurrency` at a time; none issued past the deadline."""
    deadline = time.monotonic() + options.max_seconds
    numbers = itertools.count()
    url = base + ORDERS_TARGET

    async def worker(session: aiohttp.ClientSession) -> None:
        while next(numbers) < total and time.monotonic() < deadline:
            await one_request(session, url, tally)

    async with client_session(options.concurrency) as session:
        await asyncio.gather(*(worker(session) for _ in range(options.concurrency)))


# ---- the report -------------------------------------------------------------------------------


@dataclass
class Run:
    options: Options
    tally: Tally = field(default_factory=Tally)
    before: Resources | None = None
    after: Resources | None = None
    seconds: float = 0.0
    proxy_exit: int | None = None
    log: Path | None = None


def counted(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))


def report(run: Run, faults: Faults) -> None:
    tally, outcomes = run.tally, run.tally.outcomes
    print(f"requests sent: {tally.sent}")
    print(f"answered by upstream: {outcomes[UPSTREAM]}")
    codes = f" ({counted(tally.proxy_codes)})" if tally.proxy_codes else ""
    print(f"answered by a documented proxy error: {outcomes[PROXY_ERROR]}{codes}")
    print(f"hung: {outcomes[HUNG]}")
    print(f"malformed: {outcomes[MALFORMED]}")
    if tally.unfinished:
        print(f"unfinished (in flight when interrupted): {tally.unfinished}")
    print(f"by status: {counted(tally.by_status)}")
    for sample in tally.samples:
        print(f"  e.g. {sample}")
    print(f"LWA token calls: {faults.lwa_calls}, failed by the fault injector: {faults.lwa_failed}")
    statuses = ", ".join(f"{s} {n}" for s, n in sorted(faults.upstream_statuses.items()))
    print(
        f"fake upstream: {faults.upstream_requests} requests, {faults.dropped} connections "
        f"dropped, answered {statuses}"
    )
    report_resources(run)
    rate = tally.sent / run.seconds if run.seconds else 0.0
    print(f"duration: {run.seconds:.1f} s, {rate:.1f} req/s")
    print(f"proxy exit code after SIGTERM: {run.proxy_exit}")


def report_resources(run: Run) -> None:
    if run.before is None or run.after is None:
        return
    before, after = run.before, run.after
    rss = [before.rss_bytes / MIB, after.rss_bytes / MIB]
    print(f"proxy RSS before/after: {rss[0]:.1f} / {rss[1]:.1f} MiB ({rss[1] - rss[0]:+.1f} MiB)")
    growth = after.open_fds - before.open_fds
    print(f"proxy open fds before/after: {before.open_fds} / {after.open_fds} ({growth:+d})")


def failures(run: Run) -> list[str]:
    found: list[str] = []
    outcomes = run.tally.outcomes
    if outcomes[HUNG]:
        found.append(f"{outcomes[HUNG]} hung")
    if outcomes[MALFORMED]:
        found.append(f"{outcomes[MALFORMED]} malformed")
    if run.before and run.after:
        if run.after.open_fds - run.before.open_fds >= MAX_FD_GROWTH:
            found.append(f"fd growth of {MAX_FD_GROWTH} or more")
        if run.after.rss_bytes - run.before.rss_bytes >= MAX_RSS_GROWTH:
            found.append(f"RSS growth of {MAX_RSS_GROWTH // MIB} MiB or more")
    if run.proxy_exit != 0:
        found.append(f"the proxy exited with {run.proxy_exit} on SIGTERM")
    return found


# ---- main -------------------------------------------------------------------------------------


async def soak(run: Run, faults: Faults, directory: Path) -> None:
    # Every exit path, Ctrl-C included (asyncio.run cancels this task), stops what it started.
    runner, fakes_url = await start_fakes(faults, run.options.token_lifetime_s)
    try:
        port = free_port()
        run.log = directory / "proxy.log"
        process = await start_proxy(write_config(directory, port, fakes_url), run.log)
        base = f"http://{HOST}:{port}"
        try:
            await wait_healthy(process, base)
            await load_and_measure(run, faults, base, process.pid)
        finally:
            run.proxy_exit = await stop_proxy(process)
    finally:
        await runner.cleanup()


async def load_and_measure(run: Run, faults: Faults, base: str, pid: int) -> None:
    options = run.options
    await run_load(base, options, max(WARM_UP_REQUESTS, 2 * options.concurrency), Tally())
    run.before = await settled_resources(pid)
    faults.reset_counts()
    started = time.monotonic()
    try:
        await run_load(base, options, options.requests, run.tally)
    finally:
        run.seconds = time.monotonic() - started
    run.after = await settled_resources(pid)


def describe(options: Options) -> str:
    return (
        f"soak: {options.requests} requests, concurrency {options.concurrency}, "
        f"at most {options.max_seconds:g} s, seed {options.seed}; LWA fails 1 call in "
        f"{round(1 / LWA_FAILURE_RATE)}, upstream drops {DROP_RATE:.0%} and delays up to "
        f"{MAX_DELAY_S * 1000:.0f} ms, tokens live {options.token_lifetime_s:g} s"
    )


def main(argv: list[str] | None = None) -> int:
    run = Run(parse_options(argv))
    faults = Faults(run.options.seed)
    print(describe(run.options), flush=True)
    # The proxy's log lives here and dies with it, so verdict() reads it before it goes.
    with tempfile.TemporaryDirectory(prefix="spapi-soak-") as directory:
        try:
            asyncio.run(soak(run, faults, Path(directory)))
        except KeyboardInterrupt:
            print("interrupted; the proxy and the fakes were stopped", file=sys.stderr)
            report(run, faults)
            return 130
        except StartupError as error:
            print(f"FAIL: {error}")
            print_log(run.log, notable_lines=20)
            return 1
        return verdict(run, faults)


def verdict(run: Run, faults: Faults) -> int:
    report(run, faults)
    partial = ""
    if run.tally.sent < run.options.requests:
        # Not a failure (a slow shared machine is not a proxy bug), but never silent.
        partial = f" (partial: {run.tally.sent} of {run.options.requests} sent by --max-seconds)"
        print(f"note: stopped issuing after {run.options.max_seconds:g} s (--max-seconds)")
    found = failures(run)
    print_log(run.log, notable_lines=20 if found else 0)
    if found:
        print("FAIL: " + ", ".join(found))
        return 1
    print("PASS: 0 hung, 0 malformed, resource growth within bounds, proxy exited 0" + partial)
    return 0


def print_log(log: Path | None, notable_lines: int) -> None:
    """A count of the proxy's log lines by level, then its last warnings and errors if asked."""
    if log is None or not log.exists():
        return
    lines = log.read_text(errors="replace").splitlines()
    warnings = sum(" WARNING " in line for line in lines)
    errors_ = sum(is_error(line) for line in lines)
    print(f"proxy log: {len(lines)} lines, {warnings} WARNING, {errors_} ERROR or traceback")
    if notable_lines:
        notable = [line for line in lines if " WARNING " in line or is_error(line)]
        for line in notable[-notable_lines:]:
            print("  " + line)


def is_error(line: str) -> bool:
    return " ERROR " in line or line.startswith("Traceback")


if __name__ == "__main__":
    sys.exit(main())
