"""The Login with Amazon token endpoint, ``POST /auth/o2/token`` (docs/sp-api-facts.md §4)."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from proxy.emulator.policy import GRANTLESS_SCOPES_ALLOWED
from proxy.emulator.responses import REQUEST_ID, new_request_id
from proxy.emulator.state import EmulatorState
from proxy.emulator.tokens import TokenKind

logger = logging.getLogger(__name__)

LWA_PATH = "/auth/o2/token"


class LwaError(Exception):
    """An OAuth error LWA answers with: ``{"error": code, "error_description": text}``."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description

    @property
    def status(self) -> int:
        # LWA (like RFC 6749 section 5.2) answers a failed client authentication with 401.
        return 401 if self.code == "invalid_client" else 400


async def handle_token(request: web.Request, body: bytes, state: EmulatorState) -> web.Response:
    request_id = new_request_id()
    try:
        params = _parse(body, request.content_type)
        grant = params.get("grant_type", "")
        state.lwa_calls[grant] += 1
        answer = _grant(params, state)
    except LwaError as error:
        logger.info("LWA refused a token request: %s", error.code)
        return _json(
            error.status, {"error": error.code, "error_description": error.description}, request_id
        )
    logger.info("LWA issued a token (grant_type=%s)", grant)
    return _json(200, answer, request_id)


def _grant(params: dict[str, str], state: EmulatorState) -> dict[str, Any]:
    grant = params.get("grant_type")
    if not grant:
        raise LwaError("invalid_request", _missing("grant_type"))
    if grant not in ("refresh_token", "client_credentials"):
        raise LwaError(
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        )
    _check_client(params, state)
    if grant == "refresh_token":
        return _refresh_grant(params, state)
    return _client_credentials_grant(params, state)


def _check_client(params: dict[str, str], state: EmulatorState) -> None:
    for name in ("client_id", "client_secret"):
        if not params.get(name):
            raise LwaError("invalid_request", _missing(name))
    config = state.config
    id_ok = hmac.compare_digest(params["client_id"].encode(), config.client_id.encode())
    secret_ok = hmac.compare_digest(params["client_secret"].encode(), config.client_secret.encode())
    if not (id_ok and secret_ok):
        raise LwaError("invalid_client", "Client authentication failed")


def _refresh_grant(params: dict[str, str], state: EmulatorState) -> dict[str, Any]:
    if "scope" in params:
        # docs/sp-api-facts.md §4: never send scope and refresh_token together.
        raise LwaError(
            "invalid_request", "The request has a parameter not allowed with this grant: scope"
        )
    refresh = params.get("refresh_token")
    if not refresh:
        raise LwaError("invalid_request", _missing("refresh_token"))
    config = state.config
    known = (config.refresh_token, *config.other_refresh_tokens)
    # Every candidate compared, so the time taken says nothing about which one nearly matched.
    if not sum(hmac.compare_digest(refresh.encode(), token.encode()) for token in known):
        raise LwaError(
            "invalid_grant", "The request has an invalid grant parameter : refresh_token"
        )
    lifetime = state.config.token_lifetime_s
    return {
        "access_token": state.tokens.issue(TokenKind.SELLER, lifetime),
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": _seconds(lifetime),
    }


def _client_credentials_grant(params: dict[str, str], state: EmulatorState) -> dict[str, Any]:
    if "refresh_token" in params:
        raise LwaError(
            "invalid_request",
            "The request has a parameter not allowed with this grant: refresh_token",
        )
    scope = params.get("scope")
    if not scope:
        raise LwaError("invalid_request", _missing("scope"))
    if scope not in GRANTLESS_SCOPES_ALLOWED:
        raise LwaError("invalid_scope", "An unknown scope was requested")
    lifetime = state.config.token_lifetime_s
    return {
        "access_token": state.tokens.issue(TokenKind.GRANTLESS, lifetime, scope=scope),
        "scope": scope,
        "token_type": "bearer",
        "expires_in": _seconds(lifetime),
    }


def _parse(body: bytes, content_type: str) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        if content_type == "application/json":
            # Some SDKs (the original Java LWA client) post JSON; LWA accepts both.
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            pairs = [(str(k), str(v)) for k, v in raw.items()]
        else:
            pairs = parse_qsl(text, keep_blank_values=True)
    except ValueError:
        raise LwaError("invalid_request", "The request body could not be parsed") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise LwaError("invalid_request", f"The request has a duplicate parameter : {name}")
        params[name] = value
    return params


def _missing(name: str) -> str:
    return f"The request is missing a required parameter : {name}"


def _seconds(lifetime: float) -> int | float:
    return int(lifetime) if float(lifetime).is_integer() else lifetime


def _json(status: int, body: dict[str, Any], request_id: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        charset="UTF-8",
        headers={REQUEST_ID: request_id, "Cache-Control": "no-store"},
    )
