"""Logging, configured in this one place for the whole process."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from pathlib import Path

from proxy.observability.access import AccessFacts
from proxy.observability.logsink import BatchedStreamHandler
from proxy.observability.redact import RedactingFilter, Redactor

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# botocore at DEBUG prints canonical requests and STS answers, which hold token values: keep
# these at WARNING whatever the proxy's own level is.
PINNED_AT_WARNING = ("botocore", "boto3", "urllib3", "s3transfer")
ACCESS_LOGGER = "proxy.access"
access_logger = logging.getLogger(ACCESS_LOGGER)


class StampingFormatter(logging.Formatter):
    """A formatter whose timestamp's date part is computed once per second, not per line."""

    DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
    MILLISECOND_SEPARATOR = ","
    SUFFIX = ""

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._second = self._millisecond = -1
        self._date = self._stamp = ""

    def stamp(self, created: float) -> str:
        """`created` (epoch seconds) as the line's timestamp, e.g. 2026-11-26 02:10:23,052."""
        millisecond = int(created * 1000)
        if millisecond == self._millisecond:  # under load, several lines share one
            return self._stamp
        second = int(created)
        if second != self._second:
            self._date = time.strftime(self.DATE_FORMAT, self.converter(created))
            self._second = second
        self._millisecond = millisecond
        milliseconds = int((created - second) * 1000)
        self._stamp = f"{self._date}{self.MILLISECOND_SEPARATOR}{milliseconds:03d}{self.SUFFIX}"
        return self._stamp


class LogFormatter(StampingFormatter):
    """The standard format."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)


class JsonLogFormatter(StampingFormatter):
    """One JSON object per line: time (UTC, ISO 8601, e.g. 2026-11-26T02:10:23.052Z), level,
    logger, message and, for a failure, its exception text. The handler's redacting filter has
    scrubbed the message and the exception text before this runs; json.dumps escapes control
    characters (so no text can start a line of its own) and everything outside ASCII (so a stray
    surrogate can't break the write)."""

    DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
    MILLISECOND_SEPARATOR = "."
    SUFFIX = "Z"

    def __init__(self) -> None:
        super().__init__()
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


# Writes one access line from the request's method, path, status, milliseconds and facts.
AccessWriter = Callable[[str, str, int, float, AccessFacts], None]

# The access line's fast path, set by configure_logging: the same text the logging machinery
# would write, without a LogRecord, filter and handler chain (~15 µs of ~170 µs per request
# under load), or its JSON line. None when logging was set up by someone else (tests,
# embedding).
_fast_access_line: AccessWriter | None = None


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


def write_access_line(
    method: str, path: str, status: int, elapsed_ms: float, facts: AccessFacts
) -> None:
    """Write one access line (INFO on the proxy.access logger)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    if _fast_access_line is not None:
        _fast_access_line(method, path, status, elapsed_ms, facts)
    else:
        access_logger.info("%s", access_text(method, path, status, elapsed_ms, facts))


def access_text(method: str, path: str, status: int, elapsed_ms: float, facts: AccessFacts) -> str:
    """The text access line's message, client text in it escaped."""
    return loggable(
        f"{method} {path} {status} {elapsed_ms:.1f}ms "
        f"{facts.amazon_request_id or '-'} {facts.request_id}"
    )


def fast_access_writer(
    handler: BatchedStreamHandler, formatter: LogFormatter, redactor: Redactor
) -> AccessWriter:
    """A writer of text access lines straight into `handler`, scrubbed as its filter would."""
    # What FORMAT puts between the timestamp and the message, read off the formatter itself.
    probe = logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, "\0", None, None)
    line = formatter.format(probe)
    middle = line[len(formatter.formatTime(probe)) : -1]
    scrub, stamp, write = redactor.scrub, formatter.stamp, handler.write_line

    def write_access(
        method: str, path: str, status: int, elapsed_ms: float, facts: AccessFacts
    ) -> None:
        text = access_text(method, path, status, elapsed_ms, facts)
        write(stamp(time.time()) + middle + scrub(text))

    return write_access


def json_access_writer(
    handler: BatchedStreamHandler, formatter: JsonLogFormatter, redactor: Redactor
) -> AccessWriter:
    """A writer of JSON access lines straight into `handler`: the JSON formatter's fields plus
    the access line's. Every value that came from a client or the upstream is scrubbed on its
    own, before encoding, so JSON's escaping can never hide a secret from the redactor.

    The object is put together from strings each encoded by json's own C string encoder:
    json.dumps of the whole dict took three times as long (benchmarks/observability_micro.py).
    """
    scrub, stamp, write = redactor.scrub, formatter.stamp, handler.write_line
    quoted = encode_basestring_ascii
    logger = quoted(ACCESS_LOGGER)

    def quoted_or_null(value: str | None) -> str:
        return "null" if value is None else quoted(value)

    def write_access(
        method: str, path: str, status: int, elapsed_ms: float, facts: AccessFacts
    ) -> None:
        path = scrub(path)
        amazon_request_id = facts.amazon_request_id
        write(
            f'{{"time": "{stamp(time.time())}", "level": "INFO", "logger": {logger}, '
            f'"message": {quoted(f"{method} {path} {status}")}, "method": {quoted(method)}, '
            f'"path": {quoted(path)}, "status": {status:d}, "duration_ms": {elapsed_ms:.1f}, '
            '"amazon_request_id": '
            f"{'null' if amazon_request_id is None else quoted(scrub(amazon_request_id))}, "
            f'"request_id": {quoted(scrub(facts.request_id))}, '
            f'"operation": {quoted_or_null(facts.operation)}, '
            f'"profile": {quoted_or_null(facts.profile)}, '
            f'"token_kind": {quoted_or_null(facts.token_kind)}}}'
        )

    return write_access


def configure_logging(level: str, redactor: Redactor, log_format: str = "text") -> None:
    """Logging for the whole process: `level` for the proxy's loggers, lines as `log_format`
    (text or json), every line scrubbed by `redactor`, written in batches to stderr."""
    # The format names no thread, process or source line: skip looking them up for every
    # record (the logging HOWTO's "Optimization" section; _srcfile = None skips the stack walk).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # noqa: SLF001 - the HOWTO's documented switch; no public one exists
    global _fast_access_line
    handler = BatchedStreamHandler(sys.stderr.fileno())
    formatter: LogFormatter | JsonLogFormatter
    formatter = JsonLogFormatter() if log_format == "json" else LogFormatter()
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
    _fast_access_line = (
        json_access_writer(handler, formatter, redactor)
        if isinstance(formatter, JsonLogFormatter)
        else fast_access_writer(handler, formatter, redactor)
    )


def pin_noisy_loggers() -> None:
    for name in PINNED_AT_WARNING:
        logging.getLogger(name).setLevel(logging.WARNING)
