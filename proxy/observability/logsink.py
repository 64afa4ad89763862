"""A log handler that writes in batches: one write() system call per flush, not per line.

Python's stderr is line-buffered: a system call per access line on the event loop would cost
about a tenth of the CPU per request under load, and could stall every request when the reader
of the pipe (docker logs, journald) falls behind. Here lines go into a private list;
WARNING and above are flushed at once, the rest at most FLUSH_INTERVAL_S later by a small thread,
and everything at exit.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TextIO

FLUSH_INTERVAL_S = 0.2
BUFFER_BYTES = 64 * 1024
MAX_PENDING_LINES = 1000


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    def __init__(self, fileno: int) -> None:
        stream = open(  # noqa: SIM115 - lives as long as the process; closefd=False
            fileno,
            "w",
            buffering=BUFFER_BYTES,
            encoding="utf-8",
            errors="backslashreplace",
            closefd=False,
        )
        super().__init__(stream)
        self._pending: list[str] = []  # lines not yet handed to the stream
        self._wake = threading.Event()
        self._start_flusher()
        # A forked worker has no threads: give it its own flusher.
        os.register_at_fork(before=self.flush, after_in_child=self._start_flusher)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._add(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:  # what logging's own handlers do: report, never raise
            self.handleError(record)

    def write_line(self, line: str) -> None:
        """Queue one finished INFO line (no record, filter or formatter: the caller did that).

        No lock: appending to the list is atomic, and flush() only ever removes what it wrote.
        """
        self._add(line + self.terminator)

    def _add(self, text: str) -> None:
        pending = self._pending
        pending.append(text)
        if len(pending) >= MAX_PENDING_LINES:  # a starved flusher must not let memory grow
            self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            pending = self._pending
            count = len(pending)
            if count:
                self.stream.write("".join(pending[:count]))
                del pending[:count]  # lines appended meanwhile stay for the next flush
            self.stream.flush()
        finally:
            self.release()

    def _start_flusher(self) -> None:
        thread = threading.Thread(target=self._flush_periodically, name="log-flush", daemon=True)
        thread.start()

    def _flush_periodically(self) -> None:
        while not self._wake.wait(FLUSH_INTERVAL_S):
            self.flush()

    def close(self) -> None:
        self._wake.set()
        super().close()
