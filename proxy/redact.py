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


class Redactor:
    """Knows the literal secrets in play (config secrets, tokens as they are fetched)."""

    def __init__(self, max_secrets: int = 1024) -> None:
        self._secrets: LRUCache[str, None] = LRUCache(maxsize=max_secrets)
        self._lock = threading.Lock()  # botocore logs from worker threads

    def add(self, secret: str) -> None:
        # Very short values would mask ordinary words; none of the secrets we hold are short.
        if len(secret) >= 8:
            with self._lock:
                self._secrets[secret] = None

    def scrub(self, text: str) -> str:
        with self._lock:
            known = list(self._secrets.keys())
        for secret in known:
            if secret in text:
                text = text.replace(secret, MASK)
        return SECRET_PATTERNS.sub(MASK, text)


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
