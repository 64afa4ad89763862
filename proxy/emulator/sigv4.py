"""AWS Signature Version 4 verification from the raw bytes a server received.

Written from the SigV4 specification, not from the proxy's signer, so that a request the
emulator accepts proves the bytes on the wire were signed correctly. The canonical form is
rebuilt the way AWS does it server side:

- URI: the raw path, dot segments and empty segments removed, then percent-encoded once more
  with safe ``/~`` (non-S3 services double-encode: ``%20`` becomes ``%2520``);
- query: the raw query split on ``&`` and the first ``=``, each side percent-decoded to bytes
  (``+`` stays a literal ``+``) and re-encoded RFC 3986 (safe ``-_.~``), sorted by key then value;
- headers: the ``SignedHeaders`` list, values trimmed with inner whitespace runs collapsed,
  repeated headers joined by ``,`` in the order received;
- payload: SHA-256 of the body received, or ``x-amz-content-sha256`` when sent and signed
  (it must then agree with the body).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Header values never shown in a canonical request we hand back (they are bearer secrets).
MASKED_HEADERS = frozenset({"x-amz-access-token", "x-amzn-access-token", "x-amz-security-token"})
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SIGNATURE_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KeyMaterial:
    """What the verifier needs to know about an access key id."""

    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        # Redaction built into the type: a KeyMaterial never prints its secrets.
        token = "***" if self.session_token is not None else None
        return f"KeyMaterial(secret_access_key='***', session_token={token!r})"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one verification.

    ``code`` is the AWS error code a service would answer with ("" when ``ok``):
    ``IncompleteSignature``, ``InvalidClientTokenId``, ``SignatureDoesNotMatch``.
    ``access_key_id`` is the key named in the credential scope, when it could be parsed.
    """

    ok: bool
    reason: str
    canonical_request_masked: str
    string_to_sign: str
    code: str = ""
    access_key_id: str = ""


@dataclass(frozen=True)
class _AuthHeader:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


class _Reject(Exception):
    """Internal control flow: a check failed; never escapes this module."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def verify(
    method: str,
    raw_target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    lookup: Callable[[str], KeyMaterial | None],
    *,
    service: str = "execute-api",
    now: float,
    max_skew_s: float = 300,
    region: str | None = None,
) -> Verdict:
    """Check the SigV4 ``Authorization`` of a request exactly as it was received.

    ``region``: when given, the credential scope must name it; None accepts any region.
    """
    canonical = masked = string_to_sign = access_key_id = ""
    try:
        auth = _parse_authorization(headers)
        access_key_id = auth.access_key_id
        amz_date = _single_header(headers, "x-amz-date")
        _check_scope(auth, amz_date, service=service, region=region, now=now, skew=max_skew_s)
        canonical, masked = canonical_request(
            method, raw_target, headers, body, auth.signed_headers
        )
        scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
        digest = hashlib.sha256(_utf8(canonical)).hexdigest()
        string_to_sign = "\n".join([ALGORITHM, amz_date, scope, digest])
        key = lookup(auth.access_key_id)
        if key is None:
            raise _Reject(
                "InvalidClientTokenId", "The security token included in the request is invalid."
            )
        _check_security_token(headers, auth, key)
        expected = _signature(key.secret_access_key, auth, string_to_sign)
        if not hmac.compare_digest(expected, auth.signature):
            raise _Reject(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        return Verdict(True, "", masked, string_to_sign, "", access_key_id)
    except _Reject as rejected:
        return Verdict(False, rejected.reason, masked, string_to_sign, rejected.code, access_key_id)


def canonical_request(
    method: str,
    raw_target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    signed_headers: Sequence[str],
) -> tuple[str, str]:
    """Return the canonical request and the same text with token header values masked."""
    path, _, query = raw_target.partition("?")
    header_lines = _canonical_header_lines(headers, signed_headers)
    canonical = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            *(f"{name}:{value}" for name, value in header_lines),
            "",
            ";".join(signed_headers),
            _payload_hash(headers, signed_headers, body),
        ]
    )
    return canonical, _mask_canonical(canonical)


def canonical_uri(raw_path: str) -> str:
    """The raw path, dot segments resolved, encoded once more (non-S3 SigV4)."""
    if "://" in raw_path and not raw_path.startswith("/"):
        # absolute-form request target: only its path is signed
        raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
    return quote(_remove_dot_segments(raw_path) or "/", safe="/~")


def canonical_query(raw_query: str) -> str:
    """Decode each key and value to bytes, re-encode RFC 3986, sort by key then value."""
    pairs: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        pairs.append((_rfc3986(key), _rfc3986(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """Derive the SigV4 signing key (public so tests can build known answers)."""
    key = _hmac(("AWS4" + secret_access_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _rfc3986(component: str) -> str:
    # Decode to bytes (never to str) so invalid UTF-8 survives byte-exact; '+' is not a space.
    return quote(unquote_to_bytes(component), safe="-_.~")


def _remove_dot_segments(path: str) -> str:
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment and segment != ".":
            output.append(segment)
    trailing = "/" if path.endswith("/") and output else ""
    return "/" + "/".join(output) + trailing


def _header_values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def _single_header(headers: Sequence[tuple[str, str]], name: str) -> str:
    values = _header_values(headers, name)
    if len(values) != 1:
        problem = "missing" if not values else "sent more than once"
        raise _Reject("IncompleteSignature", f"The {name} header is {problem}.")
    return values[0].strip()


def _canonical_header_lines(
    headers: Sequence[tuple[str, str]], signed_headers: Sequence[str]
) -> list[tuple[str, str]]:
    lines = []
    for name in signed_headers:
        values = _header_values(headers, name)
        if not values:
            raise _Reject(
                "SignatureDoesNotMatch",
                f"The header {name!r} is listed in SignedHeaders but was not sent.",
            )
        lines.append((name, ",".join(" ".join(v.split()) for v in values)))
    return lines


def _payload_hash(
    headers: Sequence[tuple[str, str]], signed_headers: Sequence[str], body: bytes
) -> str:
    actual = hashlib.sha256(body).hexdigest()
    declared = _header_values(headers, "x-amz-content-sha256")
    if not declared or "x-amz-content-sha256" not in signed_headers:
        return actual
    value = declared[0].strip()
    # A declared hash that disagrees with the bytes received means the body changed after
    # signing: refuse it rather than trust the header.
    if value not in (actual, UNSIGNED_PAYLOAD):
        raise _Reject(
            "SignatureDoesNotMatch",
            "The x-amz-content-sha256 header does not match the SHA-256 of the body received.",
        )
    return value


def _parse_authorization(headers: Sequence[tuple[str, str]]) -> _AuthHeader:
    value = _single_header(headers, "authorization")
    algorithm, _, rest = value.partition(" ")
    if algorithm != ALGORITHM:
        raise _Reject("IncompleteSignature", f"Unsupported authorization algorithm {algorithm!r}.")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, field_value = item.strip().partition("=")
        if not sep or name in fields:
            raise _Reject("IncompleteSignature", "The Authorization header is malformed.")
        fields[name] = field_value.strip()
    missing = {"Credential", "SignedHeaders", "Signature"} - fields.keys()
    if missing:
        raise _Reject(
            "IncompleteSignature",
            f"Authorization header requires {', '.join(sorted(missing))}.",
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise _Reject(
            "IncompleteSignature",
            "Credential must have the form ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request.",
        )
    signed = tuple(fields["SignedHeaders"].split(";"))
    if list(signed) != sorted({h.lower() for h in signed}):
        raise _Reject("IncompleteSignature", "SignedHeaders must be lowercase, sorted and unique.")
    if not _SIGNATURE_RE.match(fields["Signature"]):
        raise _Reject("IncompleteSignature", "Signature must be 64 lowercase hex digits.")
    return _AuthHeader(scope[0], scope[1], scope[2], scope[3], signed, fields["Signature"])


def _check_scope(
    auth: _AuthHeader, amz_date: str, *, service: str, region: str | None, now: float, skew: float
) -> None:
    for required in ("host", "x-amz-date"):
        if required not in auth.signed_headers:
            raise _Reject("IncompleteSignature", f"SignedHeaders must include {required}.")
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _Reject(
            "IncompleteSignature", "x-amz-date must have the form YYYYMMDDTHHMMSSZ."
        ) from None
    if abs(signed_at.timestamp() - now) > skew:
        server_time = datetime.fromtimestamp(now, UTC).strftime(_AMZ_DATE_FORMAT)
        raise _Reject(
            "SignatureDoesNotMatch",
            f"Signature expired: {amz_date} is more than {skew:g} s away from the server "
            f"time {server_time}.",
        )
    if auth.date != amz_date[:8]:
        raise _Reject(
            "SignatureDoesNotMatch",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: {auth.date!r} != {amz_date[:8]!r}",
        )
    if auth.service != service:
        raise _Reject(
            "SignatureDoesNotMatch",
            f"Credential should be scoped to correct service: {service!r}.",
        )
    if region is not None and auth.region != region:
        raise _Reject(
            "SignatureDoesNotMatch",
            f"Credential should be scoped to a valid region: {region!r}.",
        )


def _check_security_token(
    headers: Sequence[tuple[str, str]], auth: _AuthHeader, key: KeyMaterial
) -> None:
    sent = _header_values(headers, "x-amz-security-token")
    if key.session_token is None:
        if sent:
            raise _Reject(
                "InvalidClientTokenId",
                "x-amz-security-token was sent with a long-term access key.",
            )
        return
    if len(sent) != 1 or not hmac.compare_digest(sent[0].strip(), key.session_token):
        raise _Reject(
            "InvalidClientTokenId",
            "The security token included in the request is invalid "
            "(temporary credentials need their session token in x-amz-security-token).",
        )
    if "x-amz-security-token" not in auth.signed_headers:
        raise _Reject(
            "IncompleteSignature", "x-amz-security-token must be listed in SignedHeaders."
        )


def _signature(secret_access_key: str, auth: _AuthHeader, string_to_sign: str) -> str:
    key = signing_key(secret_access_key, auth.date, auth.region, auth.service)
    return hmac.new(key, _utf8(string_to_sign), hashlib.sha256).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _utf8(text: str) -> bytes:
    # aiohttp decodes header bytes with surrogateescape: this gives the received bytes back.
    return text.encode("utf-8", "surrogateescape")


def _mask_canonical(canonical: str) -> str:
    lines = []
    for line in canonical.split("\n"):
        name, sep, _ = line.partition(":")
        lines.append(f"{name}:***" if sep and name in MASKED_HEADERS else line)
    return "\n".join(lines)
