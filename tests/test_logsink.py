"""The batched log handler: warnings go out at once, other lines within the flush interval."""

from __future__ import annotations

import logging
import os
import select
import time

from proxy.logsink import FLUSH_INTERVAL_S, BatchedStreamHandler


def readable_within(fd: int, seconds: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], seconds)
    return os.read(fd, 65536) if ready else b""


def test_lines_are_batched_then_flushed_and_warnings_go_at_once() -> None:
    read_end, write_end = os.pipe()
    handler = BatchedStreamHandler(write_end)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.logsink")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.warning("first warning")
        assert readable_within(read_end, 0.05) == b"WARNING first warning\n"

        started = time.monotonic()
        for number in range(3):
            logger.info("line %d", number)
        expected = b"INFO line 0\nINFO line 1\nINFO line 2\n"
        received = b""
        while received != expected and time.monotonic() - started < FLUSH_INTERVAL_S * 5:
            received += readable_within(read_end, FLUSH_INTERVAL_S)
        assert received == expected  # written by the flusher thread, without another record
    finally:
        logger.removeHandler(handler)
        handler.close()
        os.close(read_end)
        os.close(write_end)
