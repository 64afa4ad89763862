"""Frozen credential snapshots: what one request signs with."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.secret import Secret


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None = None
