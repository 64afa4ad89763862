"""The SP-API side: Amazon-strict auth, case matching, throttling, RDTs and grantless calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest
from botocore.credentials import Credentials

from tests.emulator.conftest import Emulator, sign_headers

ORDERS = "/orders/v0/orders"
TEST_CASE_200 = f"{ORDERS}?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"
ADDRESS = f"{ORDERS}/TEST_CASE_200/address"
DESTINATIONS = "/notifications/v1/destinations"
RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"
MISSING = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "Access token is missing in the request header.",
        }
    ]
}
DENIED = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "",
        }
    ]
}


async def _json(response: Any) -> Any:
    return json.loads(await response.read())


async def test_signed_get_orders_test_case_200(emu: Emulator, iam: Credentials) -> None:
    token = await emu.token()
    response = await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token}, sign=iam)
    body = await _json(response)
    assert response.status == 200, body
    assert 1 <= len(body["payload"]["Orders"]) <= 2
    assert response.headers["x-amzn-RateLimit-Limit"] == "5.0"
    assert len(response.headers["x-amzn-RequestId"]) == 36
    received = emu.state.received[-1]
    assert (received.signature_ok, received.status, received.raw_target) == (
        True,
        200,
        TEST_CASE_200,
    )
    assert received.header("x-amz-access-token") == [token]


async def test_lwa_only_request_is_accepted(emu: Emulator) -> None:
    token = await emu.token()
    response = await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token})
    assert response.status == 200
    assert emu.state.received[-1].signature_ok is None


async def test_sts_session_credentials_sign_sp_api_calls(emu: Emulator) -> None:
    token = await emu.token()
    temporary = emu.state.credentials.issue(60)
    creds = Credentials(
        temporary.access_key_id, temporary.secret_access_key, temporary.session_token
    )
    response = await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token}, sign=creds)
    assert response.status == 200
    emu.clock.advance(61)
    token = await emu.token()  # the LWA token must still be valid, only the keys expired
    response = await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token}, sign=creds)
    body = await _json(response)
    assert response.status == 403
    assert "expired" in body["errors"][0]["message"]


async def test_missing_token_is_amazons_403(emu: Emulator) -> None:
    response = await emu.send("GET", TEST_CASE_200)
    assert response.status == 403
    assert await _json(response) == MISSING
    assert "x-emulator-hint" not in response.headers
    assert response.headers["x-amzn-RequestId"]


async def test_misnamed_token_header_gets_missing_token_and_hint(
    emu: Emulator, iam: Credentials
) -> None:
    token = await emu.token()
    response = await emu.send("GET", TEST_CASE_200, {"x-amzn-access-token": token}, sign=iam)
    assert response.status == 403
    assert await _json(response) == MISSING
    assert response.headers["x-emulator-hint"] == (
        "send the LWA token in x-amz-access-token (x-amzn-access-token is not read by SP-API)"
    )
    # the signature itself was fine: the header name is the only problem
    assert emu.state.received[-1].signature_ok is True


async def test_expired_token(make_emu: Any) -> None:
    emu: Emulator = await make_emu(token_lifetime_s=3)
    token = await emu.token()
    emu.clock.advance(2.9)
    assert (await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token})).status == 200
    emu.clock.advance(0.1)
    response = await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token})
    body = await _json(response)
    assert response.status == 403
    assert body["errors"][0]["details"] == "The access token you provided has expired."


@pytest.mark.parametrize("token", ["Atza|never-issued", ""])
async def test_unknown_token_is_invalid(emu: Emulator, token: str) -> None:
    response = await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token})
    body = await _json(response)
    assert response.status == 403
    assert body["errors"][0]["details"] == (
        "The access token you provided is revoked, malformed or invalid."
    )


async def test_tampered_signature_shows_masked_canonical_request(
    emu: Emulator, iam: Credentials
) -> None:
    token = await emu.token()
    temporary = emu.state.credentials.issue(60)
    creds = Credentials(temporary.access_key_id, "wrong-secret", temporary.session_token)
    headers = {"x-amz-access-token": token, "x-amzn-access-token": token}
    response = await emu.send("GET", TEST_CASE_200, headers, sign=creds)
    raw = await response.text()
    body = json.loads(raw)
    assert response.status == 403
    error = body["errors"][0]
    assert error["code"] == "InvalidSignature"
    assert error["message"] == (
        "The request signature we calculated does not match the signature you provided."
    )
    assert (
        "GET\n/orders/v0/orders\nCreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER\n"
        in (error["details"])
    )
    assert "x-amz-access-token:***" in error["details"]
    assert "x-amz-security-token:***" in error["details"]
    for secret in (token, temporary.session_token, temporary.secret_access_key):
        assert secret not in raw
    assert emu.state.received[-1].signature_ok is False


async def test_body_changed_after_signing_is_refused(emu: Emulator, iam: Credentials) -> None:
    token = await emu.token()
    body = b'{"restrictedResources":[{"method":"GET","path":"/orders/v0/orders/1/address"}]}'
    signed = {"x-amz-access-token": token, "content-type": "application/json"}
    headers = sign_headers("POST", emu.base + RDT_PATH, signed, body, iam)
    response = await emu.send("POST", RDT_PATH, headers, body.replace(b"1", b"2"))
    assert response.status == 403
    assert (await _json(response))["errors"][0]["code"] == "InvalidSignature"


async def test_raw_path_is_verified_double_encoded(emu: Emulator, iam: Credentials) -> None:
    token = await emu.token()
    target = "/listings/2021-08-01/items/A1B2C3/MY%20SKU%2F1?marketplaceIds=ATVPDKIKX0DER"
    response = await emu.send("GET", target, {"x-amz-access-token": token}, sign=iam)
    # not in the built-in catalog, but the signature over the raw path was checked first
    assert response.status == 404
    assert emu.state.received[-1].signature_ok is True


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        (f"{ORDERS}?CreatedAfter=TEST_CASE_400", 400, "InvalidInput"),
        (f"{ORDERS}?CreatedAfter=2024-01-01T00%3A00%3A00Z&MarketplaceIds=ATVPDKIKX0DER", 400, None),
        (
            f"{ORDERS}?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER%2CA2EUQ1WTGCTBG2",
            400,
            None,
        ),
        (f"{ORDERS}/TEST_CASE_200", 200, None),
        (f"{ORDERS}/TEST_CASE_400", 400, "InvalidInput"),
        (f"{ORDERS}/TEST_CASE_200/orderItems", 200, None),
        ("/sellers/v1/marketplaceParticipations", 200, None),
    ],
)
async def test_case_matching(emu: Emulator, target: str, status: int, code: str | None) -> None:
    token = await emu.token()
    response = await emu.send("GET", target, {"x-amz-access-token": token})
    body = await _json(response)
    assert response.status == status, body
    if status == 400 and code is None:
        assert body == {
            "errors": [{"code": "InvalidInput", "message": "Could not match input arguments"}]
        }
    assert response.headers["x-amzn-RateLimit-Limit"] == "5.0"


async def test_repeated_query_keys_match_a_list(emu: Emulator) -> None:
    token = await emu.token()
    target = f"{ORDERS}?MarketplaceIds=ATVPDKIKX0DER&CreatedAfter=TEST_CASE_200"
    response = await emu.send("GET", target, {"x-amz-access-token": token})
    assert response.status == 200


async def test_next_token_pages(emu: Emulator) -> None:
    token = await emu.token()
    headers = {"x-amz-access-token": token}
    first = await emu.send(
        "GET",
        f"{ORDERS}?CreatedAfter=TEST_CASE_200_NEXT_TOKEN&MarketplaceIds=ATVPDKIKX0DER",
        headers,
    )
    next_token = (await _json(first))["payload"]["NextToken"]
    page_two = await emu.send(
        "GET",
        f"{ORDERS}?NextToken={quote(next_token, safe='')}&MarketplaceIds=ATVPDKIKX0DER",
        headers,
    )
    payload = (await _json(page_two))["payload"]
    assert page_two.status == 200
    assert "NextToken" not in payload
    assert payload["Orders"]


async def test_unknown_path_is_404_in_sp_api_shape(emu: Emulator) -> None:
    token = await emu.token()
    response = await emu.send("GET", "/nothing/v1/here", {"x-amz-access-token": token})
    body = await _json(response)
    assert response.status == 404
    assert body["errors"][0]["code"] == "NotFound"
    assert "x-amzn-RateLimit-Limit" not in response.headers


@pytest.mark.parametrize(
    ("method", "headers", "body"),
    [
        ("GET", {"Content-Length": "0"}, None),
        ("GET", {}, b"{}"),
        ("HEAD", {}, b"x"),
    ],
)
async def test_get_with_body_or_content_length_is_front_door_html_400(
    emu: Emulator, method: str, headers: dict[str, str], body: bytes | None
) -> None:
    token = await emu.token()
    response = await emu.send(method, TEST_CASE_200, {"x-amz-access-token": token, **headers}, body)
    assert response.status == 400
    assert response.content_type == "text/html"
    assert response.headers["x-amzn-RequestId"]


async def test_throttling_30_quick_requests(emu: Emulator) -> None:
    token = await emu.token()
    headers = {"x-amz-access-token": token}
    responses = await asyncio.gather(*(emu.send("GET", TEST_CASE_200, headers) for _ in range(30)))
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 15
    assert statuses.count(429) == 15
    throttled = next(r for r in responses if r.status == 429)
    assert await _json(throttled) == {
        "errors": [
            {
                "code": "QuotaExceeded",
                "message": "You exceeded your quota for the requested resource.",
            }
        ]
    }
    assert "x-amzn-RateLimit-Limit" not in throttled.headers
    # other operations have their own bucket; time refills this one at 5/s
    assert (await emu.send("GET", f"{ORDERS}/TEST_CASE_200", headers)).status == 200
    emu.clock.advance(1)
    statuses = [(await emu.send("GET", TEST_CASE_200, headers)).status for _ in range(6)]
    assert statuses == [200] * 5 + [429]


async def test_throttle_is_configurable(make_emu: Any) -> None:
    emu: Emulator = await make_emu(rate_per_s=1.0, burst=2)
    token = await emu.token()
    statuses = [
        (await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token})).status
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


async def _rdt(emu: Emulator, token: str, resources: list[dict[str, Any]]) -> Any:
    body = json.dumps({"restrictedResources": resources}).encode()
    headers = {"x-amz-access-token": token, "content-type": "application/json"}
    return await emu.send("POST", RDT_PATH, headers, body)


async def test_restricted_operation_needs_an_rdt(emu: Emulator, iam: Credentials) -> None:
    token = await emu.token()
    refused = await emu.send("GET", ADDRESS, {"x-amz-access-token": token}, sign=iam)
    assert refused.status == 403
    assert await _json(refused) == DENIED
    assert "restricted data token" in refused.headers["x-emulator-hint"]

    issued = await _rdt(emu, token, [{"method": "GET", "path": ADDRESS}])
    answer = await _json(issued)
    assert issued.status == 200, answer
    rdt = answer["restrictedDataToken"]
    assert rdt.startswith("Atz.sprdt|")
    assert answer["expiresIn"] == 3600

    accepted = await emu.send("GET", ADDRESS, {"x-amz-access-token": rdt}, sign=iam)
    assert accepted.status == 200
    assert (await _json(accepted))["payload"]["ShippingAddress"]["City"] == "Seattle"
    # an RDT covers only what it lists
    other = await emu.send("GET", f"{ORDERS}/TEST_CASE_200/buyerInfo", {"x-amz-access-token": rdt})
    assert other.status == 403
    unrestricted = await emu.send(
        "GET", "/sellers/v1/marketplaceParticipations", {"x-amz-access-token": rdt}
    )
    assert unrestricted.status == 403


async def test_generic_rdt_path_covers_every_order(emu: Emulator) -> None:
    token = await emu.token()
    issued = await _rdt(
        emu,
        token,
        [
            {"method": "GET", "path": "/orders/v0/orders/{orderId}/buyerInfo"},
            {"method": "GET", "path": ORDERS, "dataElements": ["buyerInfo", "shippingAddress"]},
        ],
    )
    rdt = (await _json(issued))["restrictedDataToken"]
    for target in (
        f"{ORDERS}/TEST_CASE_200/buyerInfo",
        f"{ORDERS}/TEST_CASE_400/buyerInfo",
        TEST_CASE_200,
    ):
        response = await emu.send("GET", target, {"x-amz-access-token": rdt})
        assert response.status in (200, 400), target
        assert "x-emulator-hint" not in response.headers


@pytest.mark.parametrize(
    "resource",
    [
        {"method": "GET", "path": "/sellers/v1/marketplaceParticipations"},
        {"method": "", "path": "/orders/v1/orders/902-1845936-5435065/address"},
        {"method": "GET", "path": ADDRESS, "dataElements": ["buyerInfo"]},
        {"method": "GET", "path": ORDERS, "dataElements": ["creditCard"]},
    ],
)
async def test_rdt_request_errors(emu: Emulator, resource: dict[str, Any]) -> None:
    token = await emu.token()
    response = await _rdt(emu, token, [resource])
    body = await _json(response)
    assert response.status == 400
    assert body["errors"][0]["code"] == "InvalidInput"


async def test_grantless_get_destinations(emu: Emulator) -> None:
    seller = await emu.token()
    refused = await emu.send("GET", DESTINATIONS, {"x-amz-access-token": seller})
    assert refused.status == 403
    assert await _json(refused) == DENIED
    assert "client_credentials" in refused.headers["x-emulator-hint"]

    grantless = await emu.token(
        grant_type="client_credentials", scope="sellingpartnerapi::notifications"
    )
    accepted = await emu.send("GET", DESTINATIONS, {"x-amz-access-token": grantless})
    assert accepted.status == 200
    assert (await _json(accepted))["payload"]
    # a grantless token is good for nothing else
    assert (await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": grantless})).status == 403


async def test_grantless_scope_must_match(emu: Emulator) -> None:
    rotation = await emu.token(
        grant_type="client_credentials", scope="sellingpartnerapi::client_credential:rotation"
    )
    response = await emu.send("GET", DESTINATIONS, {"x-amz-access-token": rotation})
    assert response.status == 403


async def test_received_requests_never_print_tokens(emu: Emulator, iam: Credentials) -> None:
    token = await emu.token()
    await emu.send("GET", TEST_CASE_200, {"x-amz-access-token": token}, sign=iam)
    shown = repr(emu.state.received[-1])
    assert token not in shown
    assert "Signature=" not in shown
    assert "x-amz-access-token" in shown
