"""Last line of defence: scrub secrets from every log record before a handler writes it.

The code never formats a secret into a message in the first place (tests hold it to that);
this filter catches what a third-party library might print.
"""

from __future__ import annotations

import logging
import re
import threading

from cachetools import LRUCache

MASK = "***"
# LWA access/refresh tokens and RDTs (`Atza|…`, `Atzr|…`, `Atz.sprdt|…`), SigV4 signatures,
# and AWS secret-looking query/form fields a library might echo.
SECRET_PATTERNS = re.compile(
    r"Atz[a-zA-Z.]*\|[^\s\"',;&}]+"
    r"|(?<=Signature=)[0-9a-f]{64}"
    r"|(?<=client_secret=)[^&\s\"']+"
    r"|(?<=refresh_token=)[^&\s\"']+"
    r"|(?i:(?<=x-amz-security-token: )[^\s\"']+)"
)


# Every SECRET_PATTERNS match contains one of these (compared with the line lower-cased).
PATTERN_ANCHORS = ("atz", "signature=", "client_secret=", "refresh_token=", "security-token")


class Redactor:
    """Knows the literal secrets in play (config secrets, AWS keys and tokens as they are fetched).

    Scrubs log records, and every text quoted from LWA, STS or the Tokens API before it goes
    into one of the proxy's own error bodies.

    Token-shaped values (`Atza|…`) are masked by `SECRET_PATTERNS` already and not kept; the rest
    go into one compiled alternation, rebuilt only when a new secret arrives (an hourly event),
    so scrubbing a log line costs two regex passes however long the proxy has run.
    """

    def __init__(self, max_fetched: int = 256) -> None:
        self._configured: set[str] = set()  # from the config: kept for the process's life
        self._fetched: LRUCache[str, None] = LRUCache(maxsize=max_fetched)  # rotating keys
        self._literals: re.Pattern[str] | None = None
        self._lock = threading.Lock()  # botocore logs from worker threads

    def add(self, secret: str, configured: bool = False) -> None:
        # Very short values would mask ordinary words; none of the secrets we hold are short.
        if len(secret) < 8 or SECRET_PATTERNS.fullmatch(secret):
            return
        if secret in self._configured or secret in self._fetched:
            return
        with self._lock:
            if configured:
                self._configured.add(secret)
            else:
                self._fetched[secret] = None
            # Longest first, so a secret that contains another is masked whole.
            known = sorted({*self._configured, *self._fetched.keys()}, key=len, reverse=True)
            self._literals = re.compile("|".join(re.escape(secret) for secret in known))

    def scrub(self, text: str) -> str:
        literals = self._literals
        if literals is not None:
            text = literals.sub(MASK, text)
        # Cheap substring tests first: almost no line holds any of the patterns' anchors.
        lowered = text.lower()
        for anchor in PATTERN_ANCHORS:
            if anchor in lowered:
                return SECRET_PATTERNS.sub(MASK, text)
        return text


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.scrub(record.exc_text)
        return True
