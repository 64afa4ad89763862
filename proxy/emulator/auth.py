"""SP-API authentication (token, optional SigV4) and authorization, with Amazon's answers.

Mapping to Amazon's errors (403 unless noted; docs/sp-api-facts.md §1, §2 and §6):

- no ``x-amz-access-token``: Unauthorized, "Access token is missing in the request header."
  (plus an ``x-emulator-hint`` when ``x-amzn-access-token`` was sent instead);
- a token the emulator issued that has expired: "The access token you provided has expired.";
- any other token (unknown, sent twice): "The access token you provided is revoked, malformed
  or invalid.";
- a token of the wrong kind for the operation (seller token on a grantless operation, grantless
  token elsewhere or with the wrong scope, LWA token on an operation that needs an RDT, RDT
  that does not cover the request): Unauthorized, "Access to requested resource is denied."
  with empty details, as Amazon answers these in the field; the reason goes in the hint;
- ``Authorization`` present: its SigV4 is verified (Amazon today ignores it, so this is
  stricter on purpose: it proves a signer right). A mismatch answers InvalidSignature with the
  expected canonical request (token values masked); an unknown or expired key answers
  Unauthorized with API Gateway's "security token ... invalid/expired" messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from proxy.emulator import sigv4
from proxy.emulator.catalog import Operation
from proxy.emulator.state import EmulatorState
from proxy.emulator.tokens import IssuedToken, RestrictedResource, TokenKind

DENIED = "Access to requested resource is denied."
MISSING = "Access token is missing in the request header."
EXPIRED = "The access token you provided has expired."
INVALID = "The access token you provided is revoked, malformed or invalid."
WRONG_HEADER_HINT = (
    "send the LWA token in x-amz-access-token (x-amzn-access-token is not read by SP-API)"
)
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided."
)


@dataclass(frozen=True)
class Denial:
    """An SP-API error answer: status, error body fields and optional headers."""

    status: int
    code: str
    message: str
    details: str | None = None
    error_type: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class AuthResult:
    token: IssuedToken | None
    signature_ok: bool | None
    denial: Denial | None


def authenticate(
    method: str,
    raw_target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    state: EmulatorState,
) -> AuthResult:
    """Check the signature (when sent), then the access token."""
    signature_ok: bool | None = None
    if any(name.lower() == "authorization" for name, _ in headers):
        verdict = sigv4.verify(
            method,
            raw_target,
            headers,
            body,
            state.credentials.lookup,
            service="execute-api",
            now=state.config.clock(),
        )
        signature_ok = verdict.ok
        if not verdict.ok:
            return AuthResult(None, False, _signature_denial(verdict, state))
    token, denial = _access_token(headers, state)
    return AuthResult(token, signature_ok, denial)


def authorize(token: IssuedToken, op: Operation, raw_path: str) -> Denial | None:
    """Whether this kind of token may call this operation (None: allowed)."""
    reason = _refusal(token, op, raw_path)
    if reason is None:
        return None
    return Denial(403, "Unauthorized", DENIED, details="", hint=reason)


def _refusal(token: IssuedToken, op: Operation, raw_path: str) -> str | None:
    if token.kind is TokenKind.RDT:
        if any(covers(resource, op.method, raw_path) for resource in token.resources):
            return None
        return f"the restricted data token does not cover {op.method} {raw_path}"
    if token.kind is TokenKind.GRANTLESS:
        if not op.grantless:
            return (
                f"{op.operation_id} needs a seller token (grant_type=refresh_token); "
                "this token came from grant_type=client_credentials"
            )
        if op.grantless_scope and token.scope != op.grantless_scope:
            return f"{op.operation_id} needs a grantless token with scope {op.grantless_scope}"
        return None
    if op.grantless:
        scope = op.grantless_scope or "sellingpartnerapi::notifications"
        return (
            f"{op.operation_id} is grantless: get its token with "
            f"grant_type=client_credentials&scope={scope}"
        )
    if op.restricted:
        return (
            f"{op.operation_id} returns personal data: send a restricted data token from "
            "POST /tokens/2021-03-01/restrictedDataToken in x-amz-access-token"
        )
    return None


def covers(resource: RestrictedResource, method: str, raw_path: str) -> bool:
    """An RDT resource covers a request when the methods agree and every path segment does,
    ``{placeholder}`` segments matching any one segment (Amazon's "generic path")."""
    if resource.method.upper() != method.upper():
        return False
    wanted = resource.path.split("/")
    got = raw_path.split("/")
    return len(wanted) == len(got) and all(
        (w.startswith("{") and w.endswith("}") and g != "") or unquote(w) == unquote(g)
        for w, g in zip(wanted, got, strict=True)
    )


def _access_token(
    headers: Sequence[tuple[str, str]], state: EmulatorState
) -> tuple[IssuedToken | None, Denial | None]:
    values = [v for k, v in headers if k.lower() == "x-amz-access-token"]
    if not values:
        misnamed = any(k.lower() == "x-amzn-access-token" for k, _ in headers)
        hint = WRONG_HEADER_HINT if misnamed else None
        return None, Denial(403, "Unauthorized", DENIED, details=MISSING, hint=hint)
    issued = state.tokens.lookup(values[0].strip()) if len(values) == 1 else None
    if issued is None:
        return None, Denial(403, "Unauthorized", DENIED, details=INVALID)
    if state.tokens.is_expired(issued):
        return None, Denial(403, "Unauthorized", DENIED, details=EXPIRED)
    return issued, None


def _signature_denial(verdict: sigv4.Verdict, state: EmulatorState) -> Denial:
    if verdict.code == "InvalidClientTokenId":
        if state.credentials.is_expired_session(verdict.access_key_id):
            return Denial(
                403,
                "Unauthorized",
                "The security token included in the request is expired",
                details="",
                error_type="ExpiredTokenException",
            )
        return Denial(
            403,
            "Unauthorized",
            "The security token included in the request is invalid.",
            details=verdict.reason,
            error_type="UnrecognizedClientException",
        )
    details = "" if verdict.reason == SIGNATURE_MISMATCH else verdict.reason + " "
    if verdict.canonical_request_masked:
        details += (
            "The Canonical String for this request should have been\n"
            f"'{verdict.canonical_request_masked}'\n\n"
            f"The String-to-Sign should have been\n'{verdict.string_to_sign}'\n"
        )
    return Denial(
        403,
        "InvalidSignature",
        SIGNATURE_MISMATCH,
        details=details.strip(),
        error_type="InvalidSignatureException",
    )
