"""The emulator's settings: the credentials it accepts, lifetimes, throttling and its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.emulator.sigv4 import KeyMaterial

THROTTLES = ("sandbox", "models")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator accepts and how it behaves; the defaults are the demo values.

    ``clock`` drives every expiry, the SigV4 skew check and the throttle, so tests never sleep.
    ``extra_credentials`` lets a test accept keys the emulator did not issue (e.g. moto's STS).
    ``queued_s`` and ``in_progress_s``: how long a report or feed stays IN_QUEUE, then
    IN_PROGRESS, on ``clock`` (short by default so a curl session sees each status; zero in
    tests that only want DONE). ``gzip_reports`` serves report documents GZIP-compressed.
    ``throttle``: ``sandbox``, the sandbox's flat ``rate_per_s`` and ``burst`` for every
    operation, or ``models``, each operation's own usage plan from the models (the flat limit
    where a model gives none).
    """

    client_id: str = "amzn1.application-oa2-client.spapi-proxy-emulator"
    client_secret: str = "emulator-client-secret"
    refresh_token: str = "Atzr|emulator-refresh-token"
    # Refresh tokens of further sellers who authorised the same app (apps with many sellers).
    other_refresh_tokens: tuple[str, ...] = ()
    aws_access_key_id: str = "AKIAEMULATOREXAMPLE01"
    aws_secret_access_key: str = "emulator/secret/access/key"
    token_lifetime_s: float = 3600
    sts_lifetime_s: float = 3600
    rate_per_s: float = 5.0
    burst: int = 15
    models_dir: str | None = None
    queued_s: float = 1.0
    in_progress_s: float = 2.0
    gzip_reports: bool = False
    throttle: str = "sandbox"
    clock: Callable[[], float] = time.time
    extra_credentials: Callable[[str], KeyMaterial | None] | None = None

    def __post_init__(self) -> None:
        if self.throttle not in THROTTLES:
            raise ValueError(
                f"throttle must be one of {', '.join(THROTTLES)}, not {self.throttle!r}"
            )

    def __repr__(self) -> str:
        # Never print the secrets the emulator accepts (they are demo values, but habits matter).
        return (
            f"EmulatorConfig(client_id={self.client_id!r}, aws_access_key_id="
            f"{self.aws_access_key_id!r}, token_lifetime_s={self.token_lifetime_s}, "
            f"sts_lifetime_s={self.sts_lifetime_s}, rate_per_s={self.rate_per_s}, "
            f"burst={self.burst}, throttle={self.throttle!r}, models_dir={self.models_dir!r})"
        )
