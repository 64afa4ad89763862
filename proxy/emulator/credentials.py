"""Temporary AWS credentials the emulator's STS issued, and the key lookup for SigV4."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

from proxy.emulator.config import EmulatorConfig
from proxy.emulator.sigv4 import KeyMaterial

MAX_SESSIONS = 10_000
_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class TemporaryCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float

    def __repr__(self) -> str:
        return f"TemporaryCredentials(access_key_id={self.access_key_id!r}, secrets=***)"


class CredentialStore:
    """Issues ASIA… session credentials and answers "which secret signs for this key id"."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        # Kept one lifetime past expiry so an expired key is reported as expired, not unknown.
        self._sessions: TTLCache[str, TemporaryCredentials] = TTLCache(
            maxsize=MAX_SESSIONS, ttl=2 * config.sts_lifetime_s + 60, timer=config.clock
        )

    def issue(self, lifetime_s: float) -> TemporaryCredentials:
        key_id = "ASIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))
        creds = TemporaryCredentials(
            access_key_id=key_id,
            secret_access_key=secrets.token_urlsafe(30),
            session_token="IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(96),
            expires_at=self._config.clock() + lifetime_s,
        )
        self._sessions[key_id] = creds
        return creds

    def is_expired_session(self, access_key_id: str) -> bool:
        creds = self._sessions.get(access_key_id)
        return creds is not None and self._config.clock() >= creds.expires_at

    def lookup(self, access_key_id: str) -> KeyMaterial | None:
        """Long-term key from the config, live STS sessions, then ``extra_credentials``."""
        if access_key_id == self._config.aws_access_key_id:
            return KeyMaterial(self._config.aws_secret_access_key)
        creds = self._sessions.get(access_key_id)
        if creds is not None:
            if self._config.clock() >= creds.expires_at:
                return None
            return KeyMaterial(creds.secret_access_key, creds.session_token)
        return self._extra(access_key_id)

    def long_term_lookup(self) -> Callable[[str], KeyMaterial | None]:
        """Keys allowed to call STS itself: the configured IAM key and ``extra_credentials``."""

        def lookup(access_key_id: str) -> KeyMaterial | None:
            if access_key_id == self._config.aws_access_key_id:
                return KeyMaterial(self._config.aws_secret_access_key)
            return self._extra(access_key_id)

        return lookup

    def _extra(self, access_key_id: str) -> KeyMaterial | None:
        extra = self._config.extra_credentials
        return extra(access_key_id) if extra is not None else None
