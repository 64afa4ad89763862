"""Processes the benchmark starts: pinned spawning, cleanup by PID, CPU and RSS from /proc."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def pinned(command: Sequence[str], core: int | None) -> list[str]:
    """`taskset -c core command…` (taskset execs, so the PID stays the command's)."""
    if core is None or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", str(core), *command]


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class ProcessGroup:
    """Everything the benchmark started; `stop_all` ends each by its PID."""

    directory: Path
    started: list[Started] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        command: Sequence[str],
        core: int | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Started:
        log = self.directory / f"{name}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                pinned(command, core),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                preexec_fn=die_with_parent,  # only prctl: safe between fork and exec
            )
        entry = Started(name, process, log)
        self.started.append(entry)
        return entry

    def stop_all(self) -> None:
        for entry in reversed(self.started):
            stop(entry.process)
        self.started.clear()


def stop(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, entry: Started, timeout_s: float = 20.0) -> None:
    """Poll `url` until it answers at all; fail with the process's log if it died first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if entry.process.poll() is not None:
            raise RuntimeError(
                f"{entry.name} exited with {entry.process.returncode}:\n{tail(entry.log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback http only
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{entry.name} did not answer {url} within {timeout_s:g} s")


# --- /proc ------------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (worker processes, if the proxy ever forks)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = parent_pid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces


def parent_pid(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its descendants, all threads included."""
    total = 0
    for member in tree(pid):
        fields = stat_fields(member)
        if fields:
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """VmRSS of `pid` and its descendants, MiB."""
    total_kib = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def core_times() -> dict[int, tuple[float, float]]:
    """Per core since boot: (busy, steal) seconds; busy is user+nice+system+irq+softirq."""
    times: dict[int, tuple[float, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in values[:8])
            busy = user + nice + system + irq + softirq
            times[int(name[3:])] = (busy / CLOCK_TICKS, steal / CLOCK_TICKS)
    return times


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_quiet(command: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout_s, check=False
    )
