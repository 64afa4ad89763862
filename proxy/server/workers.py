"""Several worker processes on one port: fork, forward stop signals, collect exit codes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Runs `serve` in `count` forked processes (each binds the port with SO_REUSEPORT).

    Forking happens before any event loop or thread exists, so each child starts clean and
    builds its own app, connection pool and credential caches. A stop signal to the parent is
    passed on to every child, which drains and exits; the parent exits 0 only if all did.
    """
    children = [fork_worker(serve, number) for number in range(count)]
    forward_stop_signals(children)
    failed = False
    remaining = set(children)
    while remaining:
        pid, status = os.wait()
        remaining.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            logger.error("worker %d exited with %d; stopping the others", pid, code)
            failed = True
            signal_all(remaining, signal.SIGTERM)
    return 1 if failed else 0


def fork_worker(serve: Callable[[], int], number: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    for stop in STOP_SIGNALS:  # the child's event loop installs its own handlers
        signal.signal(stop, signal.SIG_DFL)
    code = 1
    try:
        logger.info("worker %d started (pid %d)", number, os.getpid())
        code = serve()
    finally:
        logging.shutdown()  # os._exit skips atexit, where buffered log lines are written
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never return into the parent's code path


def forward_stop_signals(children: list[int]) -> None:
    def forward(number: int, frame: FrameType | None) -> None:
        signal_all(children, signal.Signals(number))

    for stop in STOP_SIGNALS:
        signal.signal(stop, forward)


def signal_all(pids: list[int] | set[int], number: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(pid, number)
