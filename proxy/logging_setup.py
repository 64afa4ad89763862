"""Logging, configured in this one place for the whole process."""

from __future__ import annotations

import logging
import sys
import time

from proxy.logsink import BatchedStreamHandler
from proxy.redact import RedactingFilter, Redactor

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# botocore at DEBUG prints canonical requests and STS answers, which hold token values
# (FACTS.md §10): keep these at WARNING whatever the proxy's own level is.
PINNED_AT_WARNING = ("botocore", "boto3", "urllib3", "s3transfer")


class LogFormatter(logging.Formatter):
    """The standard format, with the date part computed once per second, not per line."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._second = -1
        self._date = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._second = second
        return f"{self._date},{int(record.msecs):03d}"


def configure_logging(level: str, redactor: Redactor) -> None:
    # The format names no thread, process or source line: skip looking them up for every
    # record (the logging HOWTO's "Optimization" section; _srcfile = None skips the stack walk).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = BatchedStreamHandler(sys.stderr.fileno())
    handler.setFormatter(LogFormatter())
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    pin_noisy_loggers()
    # The proxy writes its own access line (proxy.access); aiohttp's would repeat it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def pin_noisy_loggers() -> None:
    for name in PINNED_AT_WARNING:
        logging.getLogger(name).setLevel(logging.WARNING)
