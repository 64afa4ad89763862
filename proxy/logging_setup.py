"""Logging, configured in this one place for the whole process."""

from __future__ import annotations

import logging
import sys

from proxy.logsink import BatchedStreamHandler
from proxy.redact import RedactingFilter, Redactor

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# botocore at DEBUG prints canonical requests and STS answers, which hold token values
# (FACTS.md §10): keep these at WARNING whatever the proxy's own level is.
PINNED_AT_WARNING = ("botocore", "boto3", "urllib3", "s3transfer")


def configure_logging(level: str, redactor: Redactor) -> None:
    # The format names no thread or process: skip looking them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchedStreamHandler(sys.stderr.fileno())
    handler.setFormatter(logging.Formatter(FORMAT))
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
