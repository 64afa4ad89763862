"""Checks of one converted value each (a port, a region, a URL, a role ARN...).

Each takes the converted value and returns it, normalised where that helps (a lower-case region,
deduplicated header names), or raises `InvalidValue`. Checks that span several keys live in
`proxy.config.validate`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from proxy.config.errors import InvalidValue
from proxy.config.settings import (
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_BUSY_POLL_US,
    REGIONS,
    SHARED_STATE_ON_ERROR,
)

TOKEN_HEADERS = ("x-amz-access-token", "x-amzn-access-token")


def check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise InvalidValue(f"must be between 1 and 65535, got {value}")
    return value


def check_positive(value: float) -> float:
    if value <= 0:
        raise InvalidValue(f"must be greater than 0, got {value}")
    return value


def check_not_negative(value: float) -> float:
    if value < 0:
        raise InvalidValue(f"must be 0 or more, got {value}")
    return value


def check_busy_poll(value: int) -> int:
    if not 0 <= value <= MAX_BUSY_POLL_US:
        raise InvalidValue(f"must be 0 (off) to {MAX_BUSY_POLL_US} microseconds, got {value}")
    return value


def check_region(value: str) -> str:
    return _one_of(REGIONS, value, value.lower())


def check_endpoint(value: str) -> str:
    # The path comes from the client request, so a path here would be silently dropped.
    parts = _split_http_url(value, "http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidValue("must be http(s)://host[:port] with no path or query")
    return f"{parts.scheme}://{parts.netloc}"


def check_on_error(value: str) -> str:
    return _one_of(SHARED_STATE_ON_ERROR, value, value.lower())


def check_log_format(value: str) -> str:
    return _one_of(LOG_FORMATS, value, value.lower())


def check_log_level(value: str) -> str:
    return _one_of(LOG_LEVELS, value, value.upper())


def _one_of(choices: Collection[str], value: str, choice: str) -> str:
    """`choice` (`value` with its case normalised) if it is one of `choices`."""
    if choice not in choices:
        raise InvalidValue(f"must be one of {', '.join(choices)}, got {value!r}")
    return choice


def check_key_prefix(value: str) -> str:
    # Braces would clash with the seller's Redis Cluster hash tag that follows the prefix.
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", value):
        raise InvalidValue(f"must be letters, digits and _ . : - only, got {value!r}")
    return value


def check_http_url(value: str) -> str:
    _split_http_url(value, "an http(s):// URL")
    return value


def _split_http_url(value: str, shape: str) -> Any:
    # The value itself is not quoted: a URL may carry user:password.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"must be {shape}")
    if parts.username is not None:
        raise InvalidValue("must not contain user:password@")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidValue(f"must be {shape} with a valid port") from None
    return parts


def check_readable_file(value: str) -> str:
    path = os.path.expanduser(value)
    if not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise InvalidValue(f"file {value!r} does not exist or is not readable")
    return path


def check_token_headers(value: tuple[str, ...]) -> tuple[str, ...]:
    headers = tuple(dict.fromkeys(h.lower() for h in value))  # dedupe, keep order
    if not headers:
        raise InvalidValue(f"must list at least one of {', '.join(TOKEN_HEADERS)}")
    for header in headers:
        if header not in TOKEN_HEADERS:
            raise InvalidValue(f"{header!r} is not one of {', '.join(TOKEN_HEADERS)}")
    return headers


_METHOD = re.compile(r"[A-Z]+\Z")


def check_methods(value: tuple[str, ...]) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(m.upper() for m in value))  # dedupe, keep order
    for method in methods:
        if not _METHOD.match(method):
            raise InvalidValue(f"{method!r} is not an HTTP method name (letters only, like GET)")
    return methods


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/\S+\Z")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}\Z")


def check_role_arn(value: str) -> str:
    # Catches the common paste of a user ARN or an app id, which STS would only reject later.
    if not _ROLE_ARN.match(value):
        raise InvalidValue("must be an IAM role ARN like arn:aws:iam::123456789012:role/Name")
    return value


def check_session_name(value: str) -> str:
    if not _SESSION_NAME.match(value):
        raise InvalidValue("must be 2-64 characters of letters, digits and +=,.@_-")
    return value
