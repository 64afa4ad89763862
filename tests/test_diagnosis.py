"""The diagnosis table: each situation Amazon refuses a request in, and the one-line hint for it."""

from __future__ import annotations

import dataclasses
import gzip
import json
import zlib

import pytest

from proxy.emulator import auth as emulator_auth
from proxy.emulator.responses import FRONT_DOOR_400_HTML
from proxy.forwarding import diagnosis
from proxy.forwarding.diagnosis import Exchange, client_token_header_of, hint_for

TOKEN = "Atza|IwEBIDoctorTestTokenNeverToBeEchoed"  # a fake token to look for

# Amazon's fixed phrases (docs/sp-api-facts.md §1, §8), written out here rather than imported from
# the code under test, so a typo there fails these tests.
DENIED = "Access to requested resource is denied."
MISSING = "Access token is missing in the request header."
EXPIRED = "The access token you provided has expired."
REVOKED = "The access token you provided is revoked, malformed or invalid."
SECRET_EXPIRED = "The LWA secret token you provided has expired."


def sp_error(message: str, details: str | None = None, code: str = "Unauthorized") -> bytes:
    entry = {"code": code, "message": message}
    if details is not None:
        entry["details"] = details
    return json.dumps({"errors": [entry]}).encode()


def exchange(**changes: object) -> Exchange:
    """A 403 for a plain seller GET sent with the proxy's LWA token, changed as asked."""
    base = Exchange(
        method="GET",
        path="/sellers/v1/marketplaceParticipations",
        client_sent_body=False,
        client_token_header=None,
        token_kind="lwa",
        operation_restricted=False,
        operation_grantless=False,
        status=403,
        content_type="application/json",
        body_head=sp_error(DENIED, ""),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def html_400(**changes: object) -> Exchange:
    fields: dict[str, object] = {"content_type": "text/html", **changes}
    return exchange(status=400, body_head=FRONT_DOOR_400_HTML.encode(), **fields)


# (situation, exchange, the hint expected): one row per situation the proxy explains.
TABLE: list[tuple[str, Exchange, str]] = [
    (
        "html 400, double-encoded path",
        html_400(path="/listings/2021-08-01/items/SELLER/MY%2520SKU"),
        diagnosis.FRONT_DOOR_DOUBLE_ENCODED,
    ),
    (
        "html 400, GET with a body",
        html_400(client_sent_body=True),
        diagnosis.FRONT_DOOR_BODY_ON_GET.format(method="GET"),
    ),
    (
        "html 400, HEAD with a body",
        html_400(method="head", client_sent_body=True),
        diagnosis.FRONT_DOOR_BODY_ON_GET.format(method="HEAD"),
    ),
    (
        "html 400, nothing visible (duplicate Host or an intermediary)",
        html_400(method="POST", client_sent_body=True),
        diagnosis.FRONT_DOOR_GENERIC,
    ),
    (
        "html 400 without a content type",
        html_400(content_type=""),
        diagnosis.FRONT_DOOR_GENERIC,
    ),
    (
        "token missing, client sent x-amzn-access-token",
        exchange(body_head=sp_error(DENIED, MISSING), client_token_header="x-amzn-access-token"),
        diagnosis.TOKEN_MISSING_MISNAMED.format(header="x-amzn-access-token"),
    ),
    (
        "token missing, client sent Authorization",
        exchange(body_head=sp_error(DENIED, MISSING), client_token_header="Authorization"),
        diagnosis.TOKEN_MISSING_MISNAMED.format(header="authorization"),
    ),
    (
        "token missing, client sent the right header",
        exchange(body_head=sp_error(DENIED, MISSING), client_token_header="x-amz-access-token"),
        diagnosis.TOKEN_MISSING,
    ),
    (
        "token missing, client sent no token",
        exchange(body_head=sp_error(DENIED, MISSING)),
        diagnosis.TOKEN_MISSING,
    ),
    (
        "token missing, an unknown header name is not echoed",
        exchange(body_head=sp_error(DENIED, MISSING), client_token_header="x-" + TOKEN),
        diagnosis.TOKEN_MISSING,
    ),
    (
        "token expired although the proxy refreshed",
        exchange(body_head=sp_error(DENIED, EXPIRED)),
        diagnosis.TOKEN_EXPIRED,
    ),
    (
        "client's RDT expired",
        exchange(body_head=sp_error(DENIED, EXPIRED), token_kind="client-rdt"),
        diagnosis.CLIENT_RDT_EXPIRED,
    ),
    (
        "token revoked, malformed or invalid",
        exchange(body_head=sp_error(DENIED, REVOKED)),
        diagnosis.TOKEN_REVOKED,
    ),
    (
        "client's RDT revoked",
        exchange(body_head=sp_error(DENIED, REVOKED), token_kind="client-rdt"),
        diagnosis.CLIENT_RDT_REVOKED,
    ),
    (
        "client secret rotated",
        exchange(body_head=sp_error(DENIED, SECRET_EXPIRED)),
        diagnosis.CLIENT_SECRET_ROTATED,
    ),
    (
        "restricted operation with the LWA token",
        exchange(path="/orders/v0/orders/123-1234567-1234567/address", operation_restricted=True),
        diagnosis.NEEDS_RDT,
    ),
    (
        "restricted operation, details absent",
        exchange(operation_restricted=True, body_head=sp_error(DENIED)),
        diagnosis.NEEDS_RDT,
    ),
    (
        "grantless token on a seller operation",
        exchange(token_kind="grantless"),
        diagnosis.GRANTLESS_ON_SELLER_OPERATION,
    ),
    (
        "seller token on a grantless operation",
        exchange(path="/notifications/v1/destinations", operation_grantless=True),
        diagnosis.SELLER_TOKEN_ON_GRANTLESS_OPERATION,
    ),
    (
        "grantless token refused on a grantless operation",
        exchange(token_kind="grantless", operation_grantless=True),
        diagnosis.GRANTLESS_REFUSED,
    ),
    (
        "client's RDT does not cover the call",
        exchange(token_kind="client-rdt", operation_restricted=True),
        diagnosis.CLIENT_RDT_NOT_COVERING,
    ),
    (
        "proxy's RDT refused",
        exchange(token_kind="rdt", operation_restricted=True),
        diagnosis.RDT_REFUSED,
    ),
    (
        "fine token, app not authorized by this seller",
        exchange(),
        diagnosis.APP_NOT_AUTHORIZED,
    ),
    (
        "401 token missing",
        exchange(status=401, body_head=sp_error(DENIED, MISSING)),
        diagnosis.TOKEN_MISSING,
    ),
    (
        "401 denied, app not authorized",
        exchange(status=401),
        diagnosis.APP_NOT_AUTHORIZED,
    ),
    (
        "401 expired, body not JSON",
        exchange(status=401, content_type="text/plain", body_head=EXPIRED.encode()),
        diagnosis.TOKEN_EXPIRED,
    ),
    (
        "401 Unauthorized for an unknown reason",
        exchange(status=401, body_head=sp_error("Something new.", "Never seen before.")),
        diagnosis.UNAUTHORIZED_UNKNOWN,
    ),
    (
        "denied, with details never seen before",
        exchange(body_head=sp_error(DENIED, "A reason Amazon added last week.")),
        diagnosis.UNAUTHORIZED_UNKNOWN,
    ),
    (
        "AWS key unknown",
        exchange(body_head=sp_error("The security token included in the request is invalid.", "")),
        diagnosis.AWS_KEY_UNKNOWN,
    ),
    (
        "AWS session expired",
        exchange(body_head=sp_error("The security token included in the request is expired", "")),
        diagnosis.AWS_SESSION_EXPIRED,
    ),
    (
        "SigV4 signature mismatch",
        exchange(
            body_head=sp_error(
                "The request signature we calculated does not match the signature you provided.",
                "The Canonical String for this request should have been\n'GET\n/...'",
                code="InvalidSignature",
            )
        ),
        diagnosis.SIGNATURE_MISMATCH,
    ),
    (
        "gzip-compressed body",
        exchange(body_head=gzip.compress(sp_error(DENIED, REVOKED))),
        diagnosis.TOKEN_REVOKED,
    ),
    (
        "zlib-compressed body",
        exchange(body_head=zlib.compress(sp_error(DENIED, MISSING))),
        diagnosis.TOKEN_MISSING,
    ),
]
TABLE_IDS = [row[0] for row in TABLE]


@pytest.mark.parametrize(("situation", "exchange_", "expected"), TABLE, ids=TABLE_IDS)
def test_each_situation_gets_its_hint(situation: str, exchange_: Exchange, expected: str) -> None:
    assert hint_for(exchange_) == expected


@pytest.mark.parametrize(("situation", "exchange_", "expected"), TABLE, ids=TABLE_IDS)
def test_every_hint_is_one_short_ascii_line(
    situation: str, exchange_: Exchange, expected: str
) -> None:
    hint = hint_for(exchange_)
    assert hint is not None
    # Written to fit: the bound hint_for applies must never cut a real hint short.
    assert len(hint) < diagnosis.MAX_HINT_CHARS
    assert hint.isascii()  # it travels in an HTTP header
    assert "\n" not in hint
    assert "\r" not in hint


NOTHING_KNOWN = [
    ("200", exchange(status=200, body_head=b'{"payload": []}')),
    ("404", exchange(status=404, body_head=sp_error("Resource not found.", code="NotFound"))),
    ("429", exchange(status=429, body_head=sp_error("You exceeded your quota.", code="Quota"))),
    ("500", exchange(status=500, body_head=sp_error("Internal error.", code="InternalFailure"))),
    ("400 JSON", exchange(status=400, body_head=sp_error("Could not match input arguments"))),
    ("400 empty", exchange(status=400, content_type="", body_head=b"")),
    ("403 HTML from a firewall", exchange(content_type="text/html", body_head=b"<h1>No</h1>")),
    ("403 empty body", exchange(content_type="", body_head=b"")),
    ("403 other code", exchange(body_head=sp_error("Forbidden.", code="AccessDenied"))),
    ("403 JSON not SP-API's shape", exchange(body_head=b'{"message": "Forbidden"}')),
    ("403 JSON list", exchange(body_head=b"[1, 2]")),
    ("403 broken gzip", exchange(body_head=b"\x1f\x8b\x08\x00garbage")),
]


@pytest.mark.parametrize(
    ("situation", "exchange_"), NOTHING_KNOWN, ids=[row[0] for row in NOTHING_KNOWN]
)
def test_no_hint_when_nothing_is_known(situation: str, exchange_: Exchange) -> None:
    assert hint_for(exchange_) is None


def with_token_in_body(exchange_: Exchange) -> Exchange:
    """The same answer with a token echoed into every non-empty text field of its errors (an
    empty `details` stays empty: it is part of what "denied" means)."""
    text = diagnosis.body_text(exchange_.body_head)
    try:
        document = json.loads(text)
    except ValueError:
        return dataclasses.replace(exchange_, body_head=(text + " " + TOKEN).encode())
    for entry in document["errors"]:
        for field in ("message", "details"):
            if entry.get(field):
                entry[field] = f"{entry[field]} {TOKEN}"
    return dataclasses.replace(exchange_, body_head=json.dumps(document).encode())


@pytest.mark.parametrize(("situation", "exchange_", "expected"), TABLE, ids=TABLE_IDS)
def test_no_token_from_the_body_is_echoed(
    situation: str, exchange_: Exchange, expected: str
) -> None:
    changed = with_token_in_body(exchange_)
    assert TOKEN.encode() in changed.body_head  # the test itself put it there
    hint = hint_for(changed)
    assert hint == expected  # still diagnosed, in our own words only
    assert "Atz" not in hint


def test_the_emulators_answers_are_recognised() -> None:
    """The emulator answers as docs/sp-api-facts.md says Amazon does; the diagnosis reads them."""
    for details, expected in [
        (emulator_auth.MISSING, diagnosis.TOKEN_MISSING),
        (emulator_auth.EXPIRED, diagnosis.TOKEN_EXPIRED),
        (emulator_auth.INVALID, diagnosis.TOKEN_REVOKED),
        ("", diagnosis.APP_NOT_AUTHORIZED),
    ]:
        assert hint_for(exchange(body_head=sp_error(emulator_auth.DENIED, details))) == expected


def test_only_the_head_of_the_body_is_read() -> None:
    padding = b" " * diagnosis.BODY_HEAD_BYTES
    assert hint_for(exchange(body_head=padding + sp_error(DENIED, MISSING))) is None


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["Accept", "x-amzn-access-token", "Authorization"], "x-amzn-access-token"),
        (["Authorization", "X-Amz-Access-Token"], "authorization"),
        (["X-Amz-Access-Token"], "x-amz-access-token"),
        (["Accept", "x-spapi-rdt"], None),
    ],
)
def test_client_token_header_of_names_the_misnamed_header_first(
    names: list[str], expected: str | None
) -> None:
    assert client_token_header_of(names) == expected
