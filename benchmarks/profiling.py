"""Where the proxy's time goes under load: py-spy's raw stacks, summarised by part and function.

Each sample is charged to the first frame, from the innermost outwards, that belongs to a known
part (aiohttp client, aiohttp server, signing, …). Stdlib helpers (re, hashlib, asyncio's
transports and timeouts, …) are transparent, so a `transport.write` is charged to the side that
wrote. Only what runs straight from the loop's own dispatch (selecting, receiving, stepping
tasks) is charged to the event loop.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from benchmarks.loadgen import LoadGenerator
from benchmarks.processes import pinned

PROFILE_CONNECTIONS = 32
PROFILE_SECONDS = 8
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
EVENT_LOOP = "event loop (select, recv, task steps, callbacks)"
# The loop's dispatch: reaching one of these from the leaf means no code of ours asked for it.
DISPATCH = ("Handle._run", "BaseEventLoop._run_once", "BaseEventLoop.run_forever")
# (part, path fragments), tried in order against a frame's file name.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "signing (proxy/credentials/signing.py, botocore)",
        ("proxy/credentials/signing.py", "botocore/"),
    ),
    (
        "access log + redaction",
        ("logging/", "proxy/observability/redact", "proxy/observability/logging_setup"),
    ),
    (
        "metrics (prometheus_client, proxy/observability/metrics.py)",
        ("prometheus_client/", "proxy/observability/metrics.py"),
    ),
    ("rate limiting (proxy/forwarding/ratelimit.py)", ("proxy/forwarding/ratelimit.py",)),
    (
        "proxy forward/upstream/headers/query",
        (
            "proxy/forwarding/forward.py",
            "proxy/forwarding/upstream.py",
            "proxy/forwarding/headers.py",
            "proxy/forwarding/query.py",
        ),
    ),
    ("proxy app/middleware/credentials", ("proxy/",)),
    ("aiohttp client", ("aiohttp/client", "aiohttp/connector.py", "aiohttp/tracing.py")),
    ("aiohttp server", ("aiohttp/web", "aiohttp/base_protocol.py")),
    ("multidict / yarl", ("multidict/", "yarl/")),
)
# aiohttp's shared modules (parser, writer, streams, helpers) go to whichever side called them.
SHARED_AIOHTTP = "aiohttp (shared: parser, writer, streams)"
TRANSPARENT = (
    "asyncio/", "selectors.py", "socket.py", "re/", "re.py", "sre_", "hashlib", "hmac",
    "urllib/", "typing", "enum", "functools", "abc", "contextlib", "dataclasses", "json/",
    "email/", "http/", "collections/", "copy", "weakref", "_weakrefset", "string", "datetime",
    "time", "calendar", "threading", "aiohttp/",
)  # fmt: skip


def part_of(stack: list[str]) -> str:
    """The part charged for one sample (`stack` is outermost first)."""
    shared = False
    for frame in reversed(stack):
        if frame_function(frame).startswith(DISPATCH):
            break
        file = frame_file(frame)
        for part, fragments in PARTS:
            if any(fragment in file for fragment in fragments):
                return part
        if "aiohttp/" in file:
            shared = True
        elif not any(fragment in file for fragment in TRANSPARENT):
            return "other: " + short(file)
    return SHARED_AIOHTTP if shared else EVENT_LOOP


def in_proxy(file: str) -> bool:
    """Proxy code below the CLI (whose frames hold every sample)."""
    return "proxy/" in file and "proxy/cli.py" not in file


def frame_file(frame: str) -> str:
    match = FRAME.match(frame)
    return match["file"] if match else frame


def frame_function(frame: str) -> str:
    match = FRAME.match(frame)
    return f"{match['function']} ({short(match['file'])})" if match else frame


def short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return file.removeprefix(".11/").removeprefix(".12/")


def read_samples(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    samples = []
    for line in lines:
        stacks, _, count = line.rstrip().rpartition(" ")
        if stacks and count.isdigit():
            samples.append((stacks.split(";"), int(count)))
    return samples


def summarise(samples: list[tuple[list[str], int]], top: int = 12) -> list[str]:
    total = sum(count for _, count in samples)
    if not total:
        return ["profile: no samples (was the proxy busy?)"]
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in samples:
        parts[part_of(stack)] += count
        leaves[frame_function(stack[-1])] += count
        for function in {frame_function(f) for f in stack if in_proxy(frame_file(f))}:
            inclusive[function] += count
    lines = [f"profile: {total} samples of the proxy under load (py-spy, GIL-holding or not)"]
    lines += [f"profile part {share(n, total)} {name}" for name, n in parts.most_common()]
    lines += [f"profile self {share(n, total)} {name}" for name, n in leaves.most_common(top)]
    lines += [
        f"profile inclusive {share(n, total)} {name}" for name, n in inclusive.most_common(top)
    ]
    return lines


def share(count: int, total: int) -> str:
    return f"{count * 100 / total:5.1f}%"


def profile_proxy(
    pid: int, load: LoadGenerator, url: str, output: Path, core: int | None
) -> list[str]:
    """py-spy the proxy for PROFILE_SECONDS while it serves PROFILE_CONNECTIONS connections."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return ["profile: skipped, py-spy is not installed (pip install py-spy)"]
    command = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw"]
    command += ["--full-filenames", "--rate", "1000"]
    command += ["--duration", str(PROFILE_SECONDS - 2), "--output", str(output)]
    # The load starts first and outlasts the recording, so every sample is under load.
    loader = threading.Thread(
        target=load.run, args=(url, PROFILE_CONNECTIONS, PROFILE_SECONDS), daemon=True
    )
    loader.start()
    time.sleep(1)
    done = subprocess.run(
        pinned(command, core), capture_output=True, text=True, timeout=60, check=False
    )
    loader.join(PROFILE_SECONDS + 60)
    if done.returncode != 0 or not output.exists():
        return [f"profile: py-spy failed: {done.stderr.strip()[-300:]}"]
    lines = summarise(read_samples(output.read_text().splitlines()))
    return [*lines, f"profile: raw stacks in {output} (speedscope or flamegraph.pl read them)"]
