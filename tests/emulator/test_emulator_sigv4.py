"""The emulator's SigV4 verifier against AWS's published example and botocore as an oracle."""

from __future__ import annotations

import random
import string
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.emulator.sigv4 import KeyMaterial, Verdict, canonical_query, canonical_uri, verify

AK = "AKIDEXAMPLE0000000001"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN//+=="
HOST = "sandbox.sellingpartnerapi-na.amazon.com"

Headers = list[tuple[str, str]]


def _sign(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    *,
    token: str | None = None,
    service: str = "execute-api",
) -> tuple[str, Headers]:
    """Sign with botocore exactly as a client would and return (raw_target, headers sent)."""
    target = path + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=f"https://{HOST}{target}", headers=headers, data=body)
    SigV4Auth(Credentials(AK, SK, token), service, "us-east-1").add_auth(request)
    sent = [(k, v if isinstance(v, str) else v.decode()) for k, v in request.headers.items()]
    # The HTTP client adds Host; botocore signs it from the URL.
    return target, [*sent, ("Host", urlsplit(str(request.url)).netloc)]


def _check(
    method: str,
    target: str,
    headers: Headers,
    body: bytes,
    *,
    session: str | None = None,
    now: float | None = None,
    service: str = "execute-api",
) -> Verdict:
    return verify(
        method,
        target,
        headers,
        body,
        lambda key_id: KeyMaterial(SK, session) if key_id == AK else None,
        service=service,
        now=time.time() if now is None else now,
    )


def test_aws_published_example_known_answer() -> None:
    # The GET ListUsers example from AWS's SigV4 documentation, signature included.
    headers = [
        ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", "20150830T123600Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        ),
    ]
    now = datetime(2015, 8, 30, 12, 36, tzinfo=UTC).timestamp()
    verdict = verify(
        "GET",
        "/?Action=ListUsers&Version=2010-05-08",
        headers,
        b"",
        lambda key_id: KeyMaterial(SK) if key_id == "AKIDEXAMPLE" else None,
        service="iam",
        now=now,
    )
    assert verdict.ok, verdict.reason
    assert verdict.string_to_sign.endswith(
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    )


def test_canonical_uri_double_encodes_and_removes_dot_segments() -> None:
    assert canonical_uri("/listings/2021-08-01/items/S1/MY%20SKU") == (
        "/listings/2021-08-01/items/S1/MY%2520SKU"
    )
    assert canonical_uri("/a/./b/../c//d/") == "/a/c/d/"
    assert canonical_uri("") == "/"
    assert canonical_uri("/~user/%7E") == "/~user/%257E"


def test_canonical_query_decodes_then_reencodes_rfc3986() -> None:
    assert canonical_query("b=2&a=x%2Cy&a=1&c") == "a=1&a=x%2Cy&b=2&c="
    # '+' is a literal plus to SigV4, unlike form decoding
    assert canonical_query("q=a+b&r=a%20b") == "q=a%2Bb&r=a%20b"
    assert canonical_query("k=~-_.%7e") == "k=~-_.~"


_SEGMENT_CHARS = string.ascii_letters + string.digits + "-_.~ ,:@!$'()*;=+&%/"
_VALUE_CHARS = string.ascii_letters + string.digits + "-_.~ ,:/?+=&%é"


def _random_request(rng: random.Random) -> tuple[str, str, str, dict[str, str], bytes]:
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
    segments = [
        quote("".join(rng.choice(_SEGMENT_CHARS) for _ in range(rng.randint(1, 8))), safe="")
        for _ in range(rng.randint(1, 4))
    ]
    path = "/" + "/".join(segments)
    pairs = [
        (
            quote("".join(rng.choice(_VALUE_CHARS) for _ in range(rng.randint(1, 6))), safe="-_.~"),
            quote("".join(rng.choice(_VALUE_CHARS) for _ in range(rng.randint(0, 8))), safe="-_.~"),
        )
        for _ in range(rng.randint(0, 4))
    ]
    query = "&".join(f"{k}={v}" for k, v in pairs)
    headers = {
        "x-amz-access-token": "Atza|" + "".join(rng.choices(string.ascii_letters, k=20)),
        "Content-Type": "application/json",
        "X-Custom": "  spaced   out  value ",
    }
    body = b"" if method in ("GET", "DELETE") else rng.randbytes(rng.randint(0, 64))
    return method, path, query, headers, body


@pytest.mark.parametrize("seed", range(60))
def test_botocore_signed_random_requests_verify(seed: int) -> None:
    rng = random.Random(seed)
    method, path, query, headers, body = _random_request(rng)
    session = SESSION if seed % 2 else None
    target, sent = _sign(method, path, query, headers, body, token=session)
    verdict = _check(method, target, sent, body, session=session)
    assert verdict.ok, (verdict.reason, verdict.canonical_request_masked)


def _flip_last(signature: str) -> str:
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


def _tamper(text: str, rng: random.Random, start: int = 0) -> str:
    index = rng.randrange(start, len(text))
    replacement = "Z" if text[index] != "Z" else "Y"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("part", ["body", "path", "query", "header", "signature", "method"])
def test_any_tampering_is_rejected(seed: int, part: str) -> None:
    rng = random.Random(seed)
    method, path, query, headers, body = _random_request(rng)
    if part == "body":
        method, body = "POST", body + b"x"
    if part == "query" and not query:
        query = "MarketplaceIds=ATVPDKIKX0DER"
    target, sent = _sign(method, path, query, headers, body)
    if part == "body":
        flipped = rng.randrange(len(body))
        body = body[:flipped] + bytes([body[flipped] ^ 0x01]) + body[flipped + 1 :]
    elif part == "path":
        target = _tamper(path, rng, start=1) + target[len(path) :]
    elif part == "query":
        target = path + "?" + _tamper(query, rng)
    elif part == "header":
        sent = [(k, _tamper(v, rng) if k == "x-amz-access-token" else v) for k, v in sent]
    elif part == "signature":
        sent = [(k, _flip_last(v) if k == "Authorization" else v) for k, v in sent]
    else:
        method = "HEAD"
    verdict = _check(method, target, sent, body)
    assert not verdict.ok
    assert verdict.code in {"SignatureDoesNotMatch", "IncompleteSignature"}


def test_whitespace_in_header_values_is_canonicalised() -> None:
    target, sent = _sign("GET", "/orders/v0/orders", "", {"X-Custom": "a b"}, b"")
    respaced = [(k, "  a    b " if k == "X-Custom" else v) for k, v in sent]
    assert _check("GET", target, respaced, b"").ok


def test_repeated_header_values_are_joined_in_order() -> None:
    target, sent = _sign("GET", "/x", "", {"X-Multi": "one,two"}, b"")
    split = [kv for kv in sent if kv[0] != "X-Multi"] + [("X-Multi", "one"), ("X-Multi", "two")]
    assert _check("GET", target, split, b"").ok
    swapped = [kv for kv in sent if kv[0] != "X-Multi"] + [("X-Multi", "two"), ("X-Multi", "one")]
    assert not _check("GET", target, swapped, b"").ok


def test_unencoded_comma_signed_by_botocore_is_rejected_like_aws() -> None:
    # botocore signs a raw ',' in the URL as is; AWS re-encodes it to %2C
    # (docs/sp-api-facts.md §10).
    target, sent = _sign("GET", "/orders/v0/orders", "MarketplaceIds=A,B", {}, b"")
    assert not _check("GET", target, sent, b"").ok
    target, sent = _sign("GET", "/orders/v0/orders", "MarketplaceIds=A%2CB", {}, b"")
    assert _check("GET", target, sent, b"").ok


def test_unknown_key_is_invalid_client_token_id() -> None:
    target, sent = _sign("GET", "/x", "", {}, b"")
    verdict = verify("GET", target, sent, b"", lambda _: None, now=time.time())
    assert (verdict.ok, verdict.code, verdict.access_key_id) == (False, "InvalidClientTokenId", AK)


def test_session_token_must_match_and_be_signed() -> None:
    target, sent = _sign("GET", "/x", "", {}, b"", token=SESSION)
    assert _check("GET", target, sent, b"", session=SESSION).ok
    assert _check("GET", target, sent, b"", session="other").code == "InvalidClientTokenId"
    without = [kv for kv in sent if kv[0].lower() != "x-amz-security-token"]
    assert not _check("GET", target, without, b"", session=SESSION).ok
    # a token sent with a long-term key is refused too
    assert _check("GET", target, sent, b"", session=None).code == "InvalidClientTokenId"


def test_clock_skew_scope_date_and_service_are_checked() -> None:
    target, sent = _sign("GET", "/x", "", {}, b"")
    assert not _check("GET", target, sent, b"", now=time.time() + 301).ok
    assert _check("GET", target, sent, b"", now=time.time() + 200).ok
    wrong_service = _check("GET", target, sent, b"", service="sts")
    assert (wrong_service.ok, wrong_service.code) == (False, "SignatureDoesNotMatch")
    assert "service" in wrong_service.reason


def test_host_must_be_signed() -> None:
    target, sent = _sign("GET", "/x", "", {}, b"")
    stripped = [
        (k, v.replace("host;", "") if k == "Authorization" else v) for k, v in sent if k != "Host"
    ]
    verdict = _check("GET", target, stripped, b"")
    assert (verdict.ok, verdict.code) == (False, "IncompleteSignature")


def test_content_sha256_header_must_agree_with_body() -> None:
    import hashlib

    body = b'{"a":1}'
    declared = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    target, sent = _sign("POST", "/x", "", declared, body)
    assert _check("POST", target, sent, body).ok
    assert not _check("POST", target, sent, b'{"a":2}').ok


def test_masked_canonical_request_hides_every_token_value() -> None:
    access = "Atza|super-secret-access-token"
    target, sent = _sign(
        "GET",
        "/x",
        "",
        {"x-amz-access-token": access, "x-amzn-access-token": access},
        b"",
        token=SESSION,
    )
    tampered = [(k, _flip_last(v) if k == "Authorization" else v) for k, v in sent]
    verdict = _check("GET", target, tampered, b"", session=SESSION)
    assert not verdict.ok
    masked = verdict.canonical_request_masked
    assert "x-amz-access-token:***" in masked
    assert "x-amzn-access-token:***" in masked
    assert "x-amz-security-token:***" in masked
    assert access not in masked
    assert SESSION not in masked
