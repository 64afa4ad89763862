"""SigV4Signer: a known answer, a differential test against botocore, and the signing-key cache."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import random
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.credentials.signing import (
    _KEY_CACHE_SIZE,
    EMPTY_SHA256,
    SigV4Signer,
    _canonical_uri,
    _HmacSha256,
    _remove_dot_segments,
    amz_date,
)
from proxy.credentials.types import AwsCredentials
from proxy.forwarding.query import encode_query
from proxy.secret import Secret

HOST = "sellingpartnerapi-na.amazon.com"
CREDENTIALS = AwsCredentials("AKIDEXAMPLE", Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"))
FROZEN_NOW = calendar.timegm((2026, 11, 25, 12, 34, 56))


def test_amz_date() -> None:
    assert amz_date(FROZEN_NOW) == "20261125T123456Z"
    assert amz_date(FROZEN_NOW + 0.999) == "20261125T123456Z"
    assert amz_date(0) == "19700101T000000Z"


def test_empty_sha256() -> None:
    assert EMPTY_SHA256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_known_answer_get_with_query_and_escaped_path() -> None:
    # Expected value produced once by hand with botocore 1.44.8: AWSRequest("GET",
    # url=f"https://{HOST}{path}?{query}", headers=<the three below>, data=b""),
    # context["timestamp"] = "20261125T123456Z", then SigV4Auth(Credentials("AKIDEXAMPLE",
    # <secret above>), "execute-api", "us-east-1"): canonical_request → string_to_sign →
    # signature, assembled as add_auth does. Its canonical request had the path
    # /listings/2021-08-01/items/A1SELLER/MY%2520SKU%252F1 and the query
    # includedData=summaries%2Cattributes&issueLocale=en_US&marketplaceIds=ATVPDKIKX0DER.
    query = encode_query(
        "marketplaceIds=ATVPDKIKX0DER&includedData=summaries,attributes&issueLocale=en_US"
    )
    assert query == (
        "marketplaceIds=ATVPDKIKX0DER&includedData=summaries%2Cattributes&issueLocale=en_US"
    )
    date = amz_date(FROZEN_NOW)
    header = SigV4Signer("us-east-1").authorization(
        method="GET",
        raw_path="/listings/2021-08-01/items/A1SELLER/MY%20SKU%2F1",
        query=query,
        headers={"host": HOST, "x-amz-access-token": "Atza|IwEBIexample-token", "x-amz-date": date},
        payload_sha256=EMPTY_SHA256,
        credentials=CREDENTIALS,
        amz_date=date,
    )
    assert header == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/us-east-1/execute-api/aws4_request, "
        "SignedHeaders=host;x-amz-access-token;x-amz-date, "
        "Signature=c8aafa910087cd268b0e36626abd9d0b546aaed5b5fd2f782753e06b576da27c"
    )


# --- differential test against botocore -------------------------------------------------------

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
_REGIONS = ["us-east-1", "eu-west-1", "us-west-2"]
_HOSTS = [HOST, "sandbox.sellingpartnerapi-eu.amazon.com", "127.0.0.1:9000"]
_SEGMENTS = [
    "orders",
    "v0",
    "2021-08-01",
    "A1SELLER",
    "MY%20SKU",
    "a%2Fb",
    "%25",
    "100%25",
    "%7E",
    "~x",
    "%E2%82%AC",
    "%C3%A9t%C3%A9",
    "é",
    "a.b",
    ".hidden",
    "..x",
    ".",
    "..",
    "",
    "a+b",
    "a,b",
    "a=b;c",
    "x:y@z",
    "!$'()*",
]
_QUERY_PIECES = [*"abXY09-_.~", "+", ",", "/", "=", "&", " ", "é", "€", "%20", "%2B", "%2F"]
_VALUE_PIECES = [*"Atza|IwEB-_/+=", " ", "  ", "\t", "é"]


def _random_path(rng: random.Random) -> str:
    path = "/" + "/".join(rng.choice(_SEGMENTS) for _ in range(rng.randint(0, 6)))
    return path + "/" if rng.random() < 0.2 else path


def _random_text(rng: random.Random, pieces: list[str], most: int) -> str:
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, most)))


def _random_credentials(rng: random.Random) -> AwsCredentials:
    chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"
    secret = Secret("".join(rng.choice(chars) for _ in range(40)))
    token = Secret(_random_text(rng, _VALUE_PIECES, 60) or "t") if rng.random() < 0.5 else None
    return AwsCredentials(f"ASIA{rng.randrange(10**12):012d}", secret, token)


def _random_headers(rng: random.Random, credentials: AwsCredentials, date: str) -> dict[str, str]:
    headers = {
        "host": rng.choice(_HOSTS),
        "x-amz-date": date,
        "x-amz-access-token": _random_text(rng, _VALUE_PIECES, 80),
    }
    if credentials.session_token is not None:
        headers["x-amz-security-token"] = credentials.session_token.reveal()
    if rng.random() < 0.3:
        headers["x-amzn-access-token"] = _random_text(rng, _VALUE_PIECES, 40)
    return headers


def _botocore_authorization(
    region: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: AwsCredentials,
    date: str,
) -> str:
    """The oracle: botocore's SigV4Auth without its clock, assembled the way add_auth does."""
    token = credentials.session_token.reveal() if credentials.session_token else None
    auth = SigV4Auth(
        Credentials(credentials.access_key_id, credentials.secret_access_key.reveal(), token),
        "execute-api",
        region,
    )
    request = AWSRequest(method, url=url, headers=headers, data=body)
    request.context["timestamp"] = date
    signed = auth.headers_to_sign(request)
    assert set(signed) == set(headers), "test input must name every header botocore signs"
    canonical_request = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical_request), request)
    return (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, "
        f"SignedHeaders={auth.signed_headers(signed)}, Signature={signature}"
    )


@pytest.mark.parametrize("seed", range(4))
def test_matches_botocore_on_random_requests(seed: int) -> None:
    rng = random.Random(seed)
    signers = {region: SigV4Signer(region) for region in _REGIONS}
    for case in range(100):
        region = rng.choice(_REGIONS)
        method = rng.choice(_METHODS)
        raw_path = _random_path(rng)
        query = encode_query(_random_text(rng, _QUERY_PIECES, 40))
        body = b"" if method in ("GET", "HEAD") else rng.randbytes(rng.randint(0, 64))
        credentials = _random_credentials(rng)
        date = amz_date(FROZEN_NOW + rng.randint(-(10**8), 10**8))
        headers = _random_headers(rng, credentials, date)
        url = f"https://{headers['host']}{raw_path}?{query}"

        ours = signers[region].authorization(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            payload_sha256=hashlib.sha256(body).hexdigest(),
            credentials=credentials,
            amz_date=date,
        )
        expected = _botocore_authorization(region, method, url, headers, body, credentials, date)
        assert ours == expected, f"case {case}: {method} {raw_path}?{query} {headers}"


# --- canonical URI --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_path", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        ("//", "/"),
        ("/orders/v0/orders", "/orders/v0/orders"),
        ("/a/", "/a/"),
        ("/a//b", "/a/b"),
        ("/a/./b/../c", "/a/c"),
        ("/..", "/"),
        ("/a/..", "/"),
        ("/.x/..y/", "/.x/..y/"),
        ("/MY%20SKU%2F1", "/MY%2520SKU%252F1"),
        ("/%7E~", "/%257E~"),
        ("/é", "/%C3%A9"),
        ("/\udcff", "/%FF"),
    ],
)
def test_canonical_uri(raw_path: str, expected: str) -> None:
    assert _canonical_uri(raw_path) == expected


@pytest.mark.parametrize("seed", range(3))
def test_canonical_uri_fast_path_agrees_with_full_form(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        raw_path = _random_path(rng)
        assert _canonical_uri(raw_path) == quote(_remove_dot_segments(raw_path), safe="/~")


# --- signing-key cache ----------------------------------------------------------------------


def _sign(signer: SigV4Signer, credentials: AwsCredentials, date: str) -> str:
    return signer.authorization(
        method="GET",
        raw_path="/orders/v0/orders",
        query="CreatedAfter=TEST_CASE_200",
        headers={"host": HOST, "x-amz-date": date, "x-amz-access-token": "Atza|t"},
        payload_sha256=EMPTY_SHA256,
        credentials=credentials,
        amz_date=date,
    )


def test_signing_key_reused_within_a_day() -> None:
    signer = SigV4Signer("us-east-1")
    _sign(signer, CREDENTIALS, "20261125T000001Z")
    (entry,) = signer._keys.values()
    _sign(signer, CREDENTIALS, "20261125T235959Z")
    assert len(signer._keys) == 1
    assert next(iter(signer._keys.values())) is entry


def test_new_date_or_secret_derives_a_new_key() -> None:
    signer = SigV4Signer("us-east-1")
    first = _sign(signer, CREDENTIALS, "20261125T120000Z")
    _sign(signer, CREDENTIALS, "20261126T120000Z")
    assert len(signer._keys) == 2
    rotated = AwsCredentials(CREDENTIALS.access_key_id, Secret("another-secret"))
    assert _sign(signer, rotated, "20261125T120000Z") != first
    assert len(signer._keys) == 3


def test_cache_is_bounded_and_cached_keys_sign_like_fresh_ones() -> None:
    signer = SigV4Signer("eu-west-1")
    for day in range(1, 29):
        _sign(signer, CREDENTIALS, f"202602{day:02d}T120000Z")
        assert len(signer._keys) <= _KEY_CACHE_SIZE
    assert len(signer._keys) == _KEY_CACHE_SIZE
    date = "20260228T120000Z"  # still cached: the newest
    assert _sign(signer, CREDENTIALS, date) == _sign(SigV4Signer("eu-west-1"), CREDENTIALS, date)


def test_cache_never_shows_the_secret() -> None:
    signer = SigV4Signer("us-east-1")
    _sign(signer, CREDENTIALS, "20261125T120000Z")
    assert CREDENTIALS.secret_access_key.reveal() not in repr(signer._keys)


# --- no secret in exceptions ----------------------------------------------------------------


def _exception_text(error: BaseException) -> str:
    chained = [error, error.__cause__, error.__context__]
    return " ".join(f"{e!s} {e!r} {getattr(e, 'object', '')}" for e in chained if e)


def test_unencodable_secret_key_is_not_shown() -> None:
    credentials = AwsCredentials("AKID", Secret("secret-\udcff-key"))
    with pytest.raises(ValueError, match="not encodable") as caught:
        _sign(SigV4Signer("us-east-1"), credentials, "20261125T120000Z")
    assert "secret" not in _exception_text(caught.value).replace("the secret key", "")
    assert "\udcff" not in _exception_text(caught.value)


def test_unencodable_token_is_not_shown() -> None:
    with pytest.raises(ValueError, match="not encodable") as caught:
        SigV4Signer("us-east-1").authorization(
            method="GET",
            raw_path="/",
            query="",
            headers={"host": HOST, "x-amz-access-token": "Atza|tok\ud800en"},
            payload_sha256=EMPTY_SHA256,
            credentials=CREDENTIALS,
            amz_date="20261125T120000Z",
        )
    assert "Atza" not in _exception_text(caught.value)
    assert "\ud800" not in _exception_text(caught.value)


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_precomputed_hmac_matches_the_stdlib(key_length: int) -> None:
    rng = random.Random(key_length)
    key = bytes(rng.randrange(256) for _ in range(key_length))
    for size in (0, 1, 55, 64, 1000):
        message = bytes(rng.randrange(256) for _ in range(size))
        assert _HmacSha256(key).hexdigest(message) == hmac.new(key, message, "sha256").hexdigest()
    signer_key = _HmacSha256(key)  # reused: each call starts from the same states
    assert signer_key.hexdigest(b"a") == signer_key.hexdigest(b"a")
