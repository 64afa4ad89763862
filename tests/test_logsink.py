"""The batched log handler: warnings go out at once, other lines within the flush interval;
the access line's fast path writes what logging would."""

from __future__ import annotations

import logging
import os
import re
import select
import time

from proxy.observability.access import AccessFacts
from proxy.observability.logging_setup import ACCESS_LOGGER, LogFormatter, fast_access_writer
from proxy.observability.logsink import FLUSH_INTERVAL_S, BatchedStreamHandler
from proxy.observability.redact import RedactingFilter, Redactor


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


def test_fast_access_line_is_the_line_logging_would_write_scrubbed() -> None:
    """The access line skips the logging machinery; its text must not differ from it."""
    read_end, write_end = os.pipe()
    handler = BatchedStreamHandler(write_end)
    formatter = LogFormatter()
    handler.setFormatter(formatter)
    redactor = Redactor()
    redactor.add("configured-secret-value", configured=True)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger(ACCESS_LOGGER)
    saved = (logger.propagate, logger.level)
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    write_fast = fast_access_writer(handler, formatter, redactor)
    path = "/orders/v0/orders/configured-secret-value/Atza|leaked"
    message = f"GET {path} 200 1.5ms amzn-1 req-1"
    facts = AccessFacts("req-1")
    facts.amazon_request_id = "amzn-1"
    try:
        logger.info("%s", message)
        write_fast("GET", path, 200, 1.54, facts)
        handler.flush()
        via_logging, via_fast = readable_within(read_end, 1.0).decode().splitlines()
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = saved
        handler.close()
        os.close(read_end)
        os.close(write_end)
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
    assert stamp.match(via_fast)
    assert stamp.match(via_logging)
    assert stamp.sub("", via_fast) == stamp.sub("", via_logging)
    assert via_fast.endswith(
        " INFO    proxy.access: GET /orders/v0/orders/***/*** 200 1.5ms amzn-1 req-1"
    )
