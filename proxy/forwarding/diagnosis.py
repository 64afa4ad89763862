"""Diagnosis of Amazon's refusals: one plain-words hint for an HTML 400, a 401 or a 403.

Pure (no I/O, no state): the forwarder and `spapi-proxy doctor` describe one request and its
answer as an `Exchange`, and `hint_for` returns one line that says the likely cause and what to
do, or None when nothing is known. The causes come from docs/sp-api-facts.md §1, §4, §6 and §8.

Hints are written in our own words and chosen by matching Amazon's fixed phrases; no text of
the answer body is ever copied into them, so a body that echoed a token could not leak it
through the `x-spapi-proxy-hint` header. Every hint is ASCII (it travels in a header) and at most
`MAX_HINT_CHARS` long.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

HINT_HEADER = "x-spapi-proxy-hint"
# Only these answers get a hint; the forwarder need not read other bodies at all.
DIAGNOSED_STATUSES = frozenset({400, 401, 403})
BODY_HEAD_BYTES = 64 * 1024
MAX_HINT_CHARS = 200

# Auth-looking headers a client may send; the first one present is named in the hint.
# The misnamed ones come first: they are what the "token is missing" hint is about.
AUTH_LOOKING_HEADERS = ("x-amzn-access-token", "authorization", "x-amz-access-token")

# The kinds of token the proxy sends, named once here (this module imports nothing of the
# proxy's); proxy.forwarding.tokens puts them in `Snapshot.token_kind`, the logs and metrics.
LWA, GRANTLESS, RDT, CLIENT_RDT = "lwa", "grantless", "rdt", "client-rdt"

# --- the hints, one per situation (the table in the module's tests) --------------------------

FRONT_DOOR_DOUBLE_ENCODED = (
    "Amazon's edge refused this before SP-API (HTML 400): the path looks double-encoded (%25 "
    "followed by hex); percent-encode each path segment once"
)
FRONT_DOOR_BODY_ON_GET = (
    "Amazon's edge refused this before SP-API (HTML 400): a {method} must carry no body or "
    "Content-Length; your client sent one (the proxy drops it): stop sending it, check URL encoding"
)
FRONT_DOOR_GENERIC = (
    "Amazon's edge refused this before SP-API (HTML 400): usually a GET with a body, a duplicate "
    "Host or a double-encoded URL; check your URL encoding and any proxy in between"
)
TOKEN_MISSING_MISNAMED = (
    "SP-API reads the token only from x-amz-access-token (you sent {header}, which the proxy "
    "replaces) yet saw none: check lwa.token_headers and any gateway that strips headers"
)
TOKEN_MISSING = (
    "SP-API saw no x-amz-access-token although the proxy sends one: check that lwa.token_headers "
    "lists it and that no proxy or gateway in between strips headers"
)
TOKEN_EXPIRED = (
    "SP-API still said the token expired after the proxy fetched a new one and retried: check "
    "this machine's clock (NTP), or the token was revoked; run spapi-proxy doctor"
)
CLIENT_RDT_EXPIRED = (
    "The restricted data token you sent (x-spapi-rdt, or an RDT in x-amz-access-token) has "
    "expired (RDTs live an hour): get a new one, or send none and let the proxy fetch it"
)
TOKEN_REVOKED = (
    "SP-API refused a freshly fetched token as revoked or invalid: the seller may have revoked "
    "the app, or the refresh token is for another app or region; re-authorize, check the region"
)
CLIENT_RDT_REVOKED = (
    "SP-API refused the restricted data token you sent (x-spapi-rdt or x-amz-access-token) as "
    "revoked or invalid: get one for this app and region, or send none and let the proxy fetch it"
)
CLIENT_SECRET_ROTATED = (
    "The app's LWA client secret expired or was rotated: put the new secret from the Developer "
    "Console in lwa.client_secret (and restart the proxy)"
)
NEEDS_RDT = (
    "This operation returns personal data and needs a restricted data token (RDT), not the LWA "
    "token: set rdt.enabled: true, or send one in x-spapi-rdt"
)
GRANTLESS_ON_SELLER_OPERATION = (
    "A grantless (client_credentials) token was sent to a seller operation, which needs the "
    "seller's token from the refresh_token grant; report this to the proxy's maintainers"
)
SELLER_TOKEN_ON_GRANTLESS_OPERATION = (
    "This operation is grantless: it needs a client_credentials token with its scope, not the "
    "seller's token; report this to the proxy's maintainers"
)
GRANTLESS_REFUSED = (
    "SP-API refused the grantless token for this operation: check that the app has the role for "
    "this API (e.g. Notifications) in the Developer Console"
)
CLIENT_RDT_NOT_COVERING = (
    "The restricted data token you sent (x-spapi-rdt or x-amz-access-token) does not cover this "
    "method and path (or its dataElements): get one for exactly this call, or send none"
)
RDT_REFUSED = (
    "SP-API refused the restricted data token the proxy got for this call: check that the app "
    "has the restricted role for this data and that the seller authorized it"
)
APP_NOT_AUTHORIZED = (
    "The token is fine but this seller has not authorized the app for this API: check the app's "
    "roles in the Developer Console, then have the seller re-authorize the app"
)
AWS_KEY_UNKNOWN = (
    "AWS does not know the signing key: fix aws.access_key_id / aws.secret_access_key or "
    "aws.role_arn, or remove the aws section (SigV4 is optional since 2023)"
)
AWS_SESSION_EXPIRED = (
    "The AWS session used to sign had expired: check this machine's clock (NTP); the proxy "
    "renews STS credentials before they expire"
)
SIGNATURE_MISMATCH = (
    "AWS computed a different SigV4 signature: check aws.secret_access_key, and that nothing "
    "between the proxy and Amazon rewrites the path, query or headers"
)
UNAUTHORIZED_UNKNOWN = (
    "Amazon refused the request's credentials for a reason the proxy does not recognise: run "
    "spapi-proxy doctor to check each credential"
)

# Amazon's fixed phrases (docs/sp-api-facts.md §1 and API Gateway's SigV4 answers), lowercased.
SECRET_EXPIRED_PHRASE = "lwa secret token you provided has expired"
MISSING_PHRASE = "access token is missing in the request header"
EXPIRED_PHRASE = "access token you provided has expired"
REVOKED_PHRASE = "access token you provided is revoked, malformed or invalid"
DENIED_PHRASE = "access to requested resource is denied"
KEY_UNKNOWN_PHRASE = "security token included in the request is invalid"
SESSION_EXPIRED_PHRASE = "security token included in the request is expired"
SIGNATURE_PHRASE = "signature we calculated does not match"

# `%25` then two hex digits: a `%xx` escape that was encoded a second time.
DOUBLE_ENCODED = re.compile(r"%25[0-9A-Fa-f]{2}")
BODYLESS_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Exchange:
    """What the forwarder knows about one request and Amazon's answer to it."""

    method: str
    path: str  # raw path, no query
    client_sent_body: bool  # even if the proxy dropped it (GET/HEAD)
    client_token_header: str | None  # an auth-looking header the client sent, for "you sent X"
    token_kind: str  # what the proxy sent: "lwa" | "rdt" | "grantless" | "client-rdt"
    operation_restricted: bool  # the operation needs an RDT
    operation_grantless: bool
    status: int
    content_type: str
    body_head: bytes  # the first BODY_HEAD_BYTES of the answer body


@dataclass(frozen=True)
class AmazonError:
    """One entry of SP-API's `{"errors": [...]}`, lowercased; details None when absent."""

    code: str
    message: str
    details: str | None


def hint_for(exchange: Exchange) -> str | None:
    """One line naming the likely cause and the fix, or None when nothing is known."""
    if exchange.status == 400:
        hint = front_door_hint(exchange) if is_html(exchange) else None
    elif exchange.status in (401, 403):
        hint = auth_hint(exchange)
    else:
        hint = None
    # The hint travels in a response header; a bound keeps a future long hint from bloating it.
    return None if hint is None else hint[:MAX_HINT_CHARS]


def client_token_header_of(names: Iterable[str]) -> str | None:
    """The auth-looking header among a request's header names (`Exchange.client_token_header`)."""
    present = {name.lower() for name in names}
    return next((name for name in AUTH_LOOKING_HEADERS if name in present), None)


# --- 400: refused by Amazon's edge ------------------------------------------------------------


def is_html(exchange: Exchange) -> bool:
    if "html" in exchange.content_type.lower():
        return True
    return body_text(exchange.body_head).lstrip()[:1] == "<"


def front_door_hint(exchange: Exchange) -> str:
    """Which of the causes in docs/sp-api-facts.md §8 is likely. The proxy sets Host itself and
    strips GET bodies, so what it can see in the request comes first; the rest stays generic."""
    if DOUBLE_ENCODED.search(exchange.path):
        return FRONT_DOOR_DOUBLE_ENCODED
    method = exchange.method.upper()
    if method in BODYLESS_METHODS and exchange.client_sent_body:
        return FRONT_DOOR_BODY_ON_GET.format(method=method)
    return FRONT_DOOR_GENERIC


# --- 401 / 403: refused by SP-API -------------------------------------------------------------


def auth_hint(exchange: Exchange) -> str | None:
    text = body_text(exchange.body_head)
    errors = amazon_errors(text)
    # Without a parsable body, the fixed phrases are still searched in the raw text.
    said = " ".join(f"{e.message} {e.details or ''}" for e in errors) if errors else text.lower()
    phrase_hint = hint_from_phrases(exchange, said)
    if phrase_hint is not None:
        return phrase_hint
    if any(e.message.startswith(DENIED_PHRASE) and not e.details for e in errors):
        return denied_hint(exchange)
    if any(e.code == "unauthorized" for e in errors):
        return UNAUTHORIZED_UNKNOWN
    return None


def hint_from_phrases(exchange: Exchange, said: str) -> str | None:
    if SECRET_EXPIRED_PHRASE in said:
        return CLIENT_SECRET_ROTATED
    if MISSING_PHRASE in said:
        return missing_token_hint(exchange.client_token_header)
    client_rdt = exchange.token_kind == CLIENT_RDT
    if EXPIRED_PHRASE in said:
        return CLIENT_RDT_EXPIRED if client_rdt else TOKEN_EXPIRED
    if REVOKED_PHRASE in said:
        return CLIENT_RDT_REVOKED if client_rdt else TOKEN_REVOKED
    if KEY_UNKNOWN_PHRASE in said:
        return AWS_KEY_UNKNOWN
    if SESSION_EXPIRED_PHRASE in said:
        return AWS_SESSION_EXPIRED
    if SIGNATURE_PHRASE in said:
        return SIGNATURE_MISMATCH
    return None


def missing_token_hint(client_header: str | None) -> str:
    # Name the client's header only when it is one we know: the hint never echoes client text.
    header = (client_header or "").lower()
    if header in AUTH_LOOKING_HEADERS and header != "x-amz-access-token":
        return TOKEN_MISSING_MISNAMED.format(header=header)
    return TOKEN_MISSING


def denied_hint(exchange: Exchange) -> str:
    """Amazon's "denied" with empty details: its answer to a token of the wrong kind for the
    operation, and to an app the seller never authorized."""
    kind = exchange.token_kind
    if kind == GRANTLESS:
        return GRANTLESS_REFUSED if exchange.operation_grantless else GRANTLESS_ON_SELLER_OPERATION
    if exchange.operation_grantless and kind == LWA:
        return SELLER_TOKEN_ON_GRANTLESS_OPERATION
    if kind == CLIENT_RDT:
        return CLIENT_RDT_NOT_COVERING
    if kind == RDT:
        return RDT_REFUSED
    if exchange.operation_restricted:
        return NEEDS_RDT
    return APP_NOT_AUTHORIZED


# --- reading the body -------------------------------------------------------------------------


GZIP_WBITS = 16 + zlib.MAX_WBITS
ZLIB_WBITS = zlib.MAX_WBITS
RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


def body_text(body: bytes) -> str:
    return inflate(body[:BODY_HEAD_BYTES]).decode("utf-8", errors="replace")


def decoded_head(body: bytes, content_encoding: str) -> bytes:
    """The start of an answer body decoded as its Content-Encoding says, for reading only.

    The proxy passes Amazon's bytes on with their Content-Encoding, so an error body a client
    asked to be compressed arrives compressed. At most BODY_HEAD_BYTES come out however much
    the input inflates (no decompression bomb); a body that is not gzip or deflate, or does
    not decode, is returned as sent.
    """
    coding = content_encoding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        attempts: tuple[int, ...] = (GZIP_WBITS,)
    elif coding == "deflate":
        # RFC 9110's deflate is zlib-wrapped; some servers send the raw stream.
        attempts = (ZLIB_WBITS, RAW_DEFLATE_WBITS)
    else:
        return body
    for wbits in attempts:
        decoded = inflated(body, wbits)
        if decoded is not None:
            return decoded
    return body


def inflate(body: bytes) -> bytes:
    """The body decompressed when its first bytes say gzip or zlib, for callers that build an
    Exchange with no Content-Encoding to go by; a body already decoded passes as is."""
    if body[:2] == b"\x1f\x8b":
        wbits = GZIP_WBITS
    elif len(body) >= 2 and body[0] == 0x78 and (body[0] * 256 + body[1]) % 31 == 0:
        wbits = ZLIB_WBITS
    else:
        return body
    decoded = inflated(body, wbits)
    return body if decoded is None else decoded


def inflated(body: bytes, wbits: int) -> bytes | None:
    """At most BODY_HEAD_BYTES of `body` decompressed, or None when it is not that format."""
    try:
        return zlib.decompressobj(wbits).decompress(body, BODY_HEAD_BYTES)
    except zlib.error:
        return None


def amazon_errors(text: str) -> list[AmazonError]:
    """SP-API's error entries, or [] when the text is not that shape."""
    try:
        document = json.loads(text)
    except ValueError:
        return []
    entries = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return []
    return [amazon_error(entry) for entry in entries if isinstance(entry, dict)]


def amazon_error(entry: dict[str, object]) -> AmazonError:
    details = entry.get("details")
    return AmazonError(
        code=str(entry.get("code", "")).lower(),
        message=str(entry.get("message", "")).lower(),
        details=None if details is None else str(details).lower().strip(),
    )
