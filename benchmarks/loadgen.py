"""Load generation: wrk (installed from apt when missing), or a small asyncio fallback.

Both give the same `LoadResult`: completed requests, wall seconds, p50 and p99 latency and the
count of failed requests. The fallback runs as `python -m benchmarks.loadgen URL -c N -d S` and
prints the result as JSON; it exists only for machines where apt can't install wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.processes import pinned, run_quiet

REQUEST_HEADERS = {"Accept": "application/json", "User-Agent": "spapi-bench/1.0"}
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
# Percentiles beyond `--latency`'s 50/75/90/99, printed by wrk once at the end (µs).
TAIL_SCRIPT = """
function done(summary, latency, requests)
  io.write(string.format("tail-us %d %d\\n", latency:percentile(99.9), latency.max))
end
"""
# wrk stops its thread after `limit` answers (for the RSS mode's "after N requests") and
# leaves a marker file: wrk itself sleeps out its whole -d unless it gets SIGINT.
STOP_AFTER_SCRIPT = """
local answered = 0
local limit = {limit}
function response(status, headers, body)
  answered = answered + 1
  if answered == limit then
    wrk.thread:stop()
    io.open({marker}, "w"):close()
  end
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int  # non-2xx/3xx answers plus socket errors
    p999_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class LoadError(RuntimeError):
    pass


def ensure_wrk() -> bool:
    """True when wrk is on PATH, installing it from apt if needed."""
    if shutil.which("wrk"):
        return True
    if shutil.which("apt-get"):
        print("installing wrk from apt…", file=sys.stderr)
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if run_quiet(install, 300).returncode != 0:
            run_quiet(["apt-get", "update", "-qq"], 300)
            run_quiet(install, 300)
    return shutil.which("wrk") is not None


@dataclass
class LoadGenerator:
    """Runs one bounded load against a URL, pinned to `core`."""

    use_wrk: bool
    workdir: Path
    core: int | None
    python: str = sys.executable
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "wrk" if self.use_wrk else "python fallback load generator"

    def run(
        self,
        url: str,
        connections: int,
        seconds: float,
        limit: int | None = None,
        core: int | None = None,
    ) -> LoadResult:
        """One bounded run; `core` overrides the generator's usual core for this run."""
        marker = self.workdir / f"reached-{limit}" if limit and self.use_wrk else None
        command = self._command(url, connections, seconds, limit, marker)
        process = subprocess.Popen(
            pinned(command, self.core if core is None else core),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if marker is not None:
                interrupt_when_reached(process, marker, seconds + 60)
            stdout, stderr = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            raise LoadError(f"{self.name} did not finish within {seconds + 60:g} s") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            raise LoadError(f"{self.name} failed ({process.returncode}): {stderr.strip()}")
        if self.use_wrk:
            return parse_wrk(stdout)
        return LoadResult(**json.loads(stdout))

    def _command(
        self, url: str, connections: int, seconds: float, limit: int | None, marker: Path | None
    ) -> list[str]:
        if not self.use_wrk:
            command = [self.python, "-m", "benchmarks.loadgen", url]
            command += ["-c", str(connections), "-d", f"{seconds:g}"]
            return command + (["--limit", str(limit)] if limit else [])
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
        command += ["--timeout", "10s"]
        for name, value in REQUEST_HEADERS.items():
            command += ["-H", f"{name}: {value}"]
        script = self.workdir / f"wrk-{limit or 'timed'}.lua"
        text = TAIL_SCRIPT
        if limit and marker:
            marker.unlink(missing_ok=True)
            text += STOP_AFTER_SCRIPT.format(limit=limit, marker=json.dumps(str(marker)))
        script.write_text(text)
        command += ["-s", str(script)]
        return [*command, url]


def interrupt_when_reached(process: subprocess.Popen[str], marker: Path, timeout_s: float) -> None:
    """SIGINT wrk (it then prints its results at once) when its script left `marker`."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if marker.exists():
            process.send_signal(signal.SIGINT)
            return
        time.sleep(0.02)


def parse_wrk(text: str) -> LoadResult:
    """Requests, duration, p50/p99 and failures from `wrk --latency` output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)", text, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)", text, re.MULTILINE)
    if not (total and p50 and p99):
        raise LoadError(f"could not read wrk's output:\n{text}")
    failed = 0
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        failed += int(non_2xx.group(1))
    if socket_errors := re.search(r"Socket errors: (.*)", text):
        failed += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    tail = re.search(r"^tail-us (\d+) (\d+)", text, re.MULTILINE)
    return LoadResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * UNITS_MS[total.group(3)] / 1000,
        p50_ms=float(p50.group(1)) * UNITS_MS[p50.group(2)],
        p99_ms=float(p99.group(1)) * UNITS_MS[p99.group(2)],
        failed=failed,
        p999_ms=int(tail.group(1)) / 1000 if tail else 0.0,
        max_ms=int(tail.group(2)) / 1000 if tail else 0.0,
    )


# --- the fallback load generator --------------------------------------------------------------


@dataclass
class Tally:
    deadline: float
    limit: int | None
    latencies: list[float] = field(default_factory=list)
    failed: int = 0

    def over(self) -> bool:
        if self.limit is not None and len(self.latencies) >= self.limit:
            return True
        return time.perf_counter() >= self.deadline


class Connection(asyncio.Protocol):
    """One keep-alive connection sending the same request after each complete answer."""

    def __init__(self, request: bytes, tally: Tally, done: asyncio.Future[None]) -> None:
        self._request = request
        self._tally = tally
        self._done = done
        self._buffer = bytearray()
        self._sent_at = 0.0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._sent_at = time.perf_counter()
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (status := self._take_response()) is not None:
            self._tally.latencies.append(time.perf_counter() - self._sent_at)
            if not 200 <= status < 400:
                self._tally.failed += 1
            if self._tally.over():
                self._finish()
                return
            self._send()

    def _take_response(self) -> int | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self._buffer[:end]).decode("latin-1")
        length = re.search(r"(?im)^content-length:\s*(\d+)", head)
        if length is None:
            raise LoadError("the fallback load generator needs a Content-Length in every answer")
        if len(self._buffer) < end + 4 + int(length.group(1)):
            return None
        del self._buffer[: end + 4 + int(length.group(1))]
        return int(head.split(" ", 2)[1])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._tally.failed += 1
            self._done.set_result(None)

    def _finish(self) -> None:
        assert self._transport is not None
        self._transport.close()
        if not self._done.done():
            self._done.set_result(None)


def protocol_factory(
    request: bytes, tally: Tally, done: asyncio.Future[None]
) -> Callable[[], Connection]:
    return lambda: Connection(request, tally, done)


async def generate(url: str, connections: int, seconds: float, limit: int | None) -> LoadResult:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in REQUEST_HEADERS.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    tally = Tally(started + seconds, limit)
    finished: list[asyncio.Future[None]] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        finished.append(done)
        await loop.create_connection(
            protocol_factory(request, tally, done), parts.hostname or "127.0.0.1", parts.port or 80
        )
    await asyncio.gather(*finished)
    elapsed = time.perf_counter() - started
    ordered = sorted(tally.latencies) or [0.0]

    def percentile(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000

    return LoadResult(
        requests=len(tally.latencies),
        seconds=elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=percentile(0.99),
        failed=tally.failed,
        p999_ms=percentile(0.999),
        max_ms=ordered[-1] * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="fallback HTTP/1.1 keep-alive load generator")
    parser.add_argument("url")
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-d", "--seconds", type=float, default=3.0)
    parser.add_argument("--limit", type=int, default=None, help="stop after N answers")
    args = parser.parse_args()
    result = asyncio.run(generate(args.url, args.connections, args.seconds, args.limit))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
