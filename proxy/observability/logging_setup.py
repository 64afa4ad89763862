"""Logging, configured in this one place for the whole process."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from proxy.observability.logsink import BatchedStreamHandler
from proxy.observability.redact import RedactingFilter, Redactor

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# botocore at DEBUG prints canonical requests and STS answers, which hold token values: keep
# these at WARNING whatever the proxy's own level is.
PINNED_AT_WARNING = ("botocore", "boto3", "urllib3", "s3transfer")
ACCESS_LOGGER = "proxy.access"
access_logger = logging.getLogger(ACCESS_LOGGER)


class LogFormatter(logging.Formatter):
    """The standard format, with the date part computed once per second, not per line."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._second = self._millisecond = -1
        self._date = self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        """`created` (epoch seconds) as the line's timestamp, e.g. 2026-11-26 02:10:23,052."""
        millisecond = int(created * 1000)
        if millisecond == self._millisecond:  # under load, several lines share one
            return self._stamp
        second = int(created)
        if second != self._second:
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
            self._second = second
        self._millisecond = millisecond
        self._stamp = f"{self._date},{int((created - second) * 1000):03d}"
        return self._stamp


# The access line's fast path, set by configure_logging: the same text the logging machinery
# would write, without a LogRecord, filter and handler chain (~15 µs of ~170 µs per request
# under load). None when logging was set up by someone else (tests, embedding).
_fast_access_line: Callable[[str], None] | None = None


def loggable(text: str) -> str:
    """`text` from a client or an upstream, safe to put in a log line: control characters (a
    newline would start a forged line, ESC drives terminals) are written as escapes.

    isprintable() is one C pass that is true for nearly every path; only the rare rest pays
    for escaping (which also escapes backslashes and non-printable non-ASCII).
    """
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def failure_summary(error: BaseException, scrub: Callable[[str], str] | None = None) -> str:
    """`RuntimeError at forward.py:123: message`: the class, where it was raised and, given
    `scrub` (the redactor's), the message through it, control characters escaped.

    Never a traceback: its text quotes exception messages, which may hold values (a credential
    source's raw answer) the redactor never saw whole. `failure_frames` gives the frames alone.
    """
    frames = traceback.extract_tb(error.__traceback__)[-1:]
    where = f" at {Path(frames[0].filename).name}:{frames[0].lineno}" if frames else ""
    message = f": {loggable(scrub(str(error)))}" if scrub is not None else ""
    return f"{type(error).__name__}{where}{message}"


def failure_frames(error: BaseException) -> str:
    """The stack an exception was raised through, file, line and code only (no message)."""
    return "".join(traceback.format_tb(error.__traceback__)).rstrip()


def write_access_line(message: str) -> None:
    """Write one access line (INFO on the proxy.access logger); client text in it is escaped."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    message = loggable(message)
    if _fast_access_line is not None:
        _fast_access_line(message)
    else:
        access_logger.info("%s", message)


def fast_access_writer(
    handler: BatchedStreamHandler, formatter: LogFormatter, redactor: Redactor
) -> Callable[[str], None]:
    """A writer of access lines straight into `handler`, scrubbed as its filter would."""
    # What FORMAT puts between the timestamp and the message, read off the formatter itself.
    probe = logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, "\0", None, None)
    line = formatter.format(probe)
    middle = line[len(formatter.formatTime(probe)) : -1]
    scrub, stamp, write = redactor.scrub, formatter.stamp, handler.write_line

    def write_access(message: str) -> None:
        write(stamp(time.time()) + middle + scrub(message))

    return write_access


def configure_logging(level: str, redactor: Redactor) -> None:
    # The format names no thread, process or source line: skip looking them up for every
    # record (the logging HOWTO's "Optimization" section; _srcfile = None skips the stack walk).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # noqa: SLF001 - the HOWTO's documented switch; no public one exists
    global _fast_access_line
    handler = BatchedStreamHandler(sys.stderr.fileno())
    formatter = LogFormatter()
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    pin_noisy_loggers()
    # The proxy writes its own access line (proxy.access); aiohttp's would repeat it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Valid while the root's one handler is this one and proxy.access adds none of its own.
    _fast_access_line = fast_access_writer(handler, formatter, redactor)


def pin_noisy_loggers() -> None:
    for name in PINNED_AT_WARNING:
        logging.getLogger(name).setLevel(logging.WARNING)
