"""The operation table and index: matching raw paths, RDT and grantless flags, usage plans."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.emulator import policy
from proxy.forwarding.operations import (
    DATA_ELEMENTS,
    GRANTLESS,
    NOTIFICATIONS_SCOPE,
    RESTRICTED,
    ROTATION_SCOPE,
    Operation,
    OperationIndex,
)
from proxy.forwarding.operations_table import TABLE, Row
from tests.support.models import MODELS, requires_models

REPO = Path(__file__).resolve().parents[1]
_PARAM = re.compile(r"\{[^/{}]+\}")
INDEX = OperationIndex()


def concrete(template: str) -> str:
    """A path the template should match, with a distinct value per parameter."""
    return _PARAM.sub(lambda m: f"X{m.start()}", template)


def op_named(api: str, name: str, method: str | None = None) -> Operation:
    (op,) = [
        o
        for o in INDEX.operations
        if o.api == api and o.name == name and method in (None, o.method)
    ]
    return op


def test_table_has_every_operation_once() -> None:
    assert len(TABLE) == 370
    assert len({(row[2], row[3]) for row in TABLE}) == 370


@pytest.mark.parametrize("row", TABLE, ids=lambda row: f"{row[0]}.{row[1]}.{row[2]}")
def test_every_template_matches_only_its_operation(row: Row) -> None:
    api, name, method, template, _, _ = row
    found = INDEX.match(method, concrete(template))
    assert found is not None
    assert (found.api, found.name, found.method, found.path_template) == (
        api,
        name,
        method,
        template,
    )


def test_a_path_matches_only_operations_of_its_method() -> None:
    for op in INDEX.operations:
        others = {"GET", "PUT", "POST", "DELETE", "PATCH"} - {
            o.method for o in INDEX.operations if o.path_template == op.path_template
        }
        for method in others:
            found = INDEX.match(method, concrete(op.path_template))
            assert found is None or found.path_template != op.path_template


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/orders/v0/orders", "getOrders"),
        ("/orders/v0/orders/123-1234567-1234567", "getOrder"),
        ("/orders/v0/orders/123-1234567-1234567/address", "getOrderAddress"),
        ("/orders/v0/orders/123-1234567-1234567/orderItems", "getOrderItems"),
        ("/orders/v0/orders/123-1234567-1234567/orderItems/buyerInfo", "getOrderItemsBuyerInfo"),
        ("/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=A", "getOrders"),
        # an order id that happens to spell a literal segment is still an order id
        ("/orders/v0/orders/address", "getOrder"),
    ],
)
def test_overlapping_orders_templates(path: str, name: str) -> None:
    found = INDEX.match("GET", path)
    assert found is not None
    assert (found.api, found.name) == ("ordersV0", name)


def test_same_length_literal_beats_parameter() -> None:
    # POST .../{notificationType}/testNotification vs GET/DELETE .../{type}/{subscriptionId}
    post = INDEX.match("POST", "/notifications/v1/subscriptions/ANY_OFFER_CHANGED/testNotification")
    get = INDEX.match("GET", "/notifications/v1/subscriptions/ANY_OFFER_CHANGED/testNotification")
    assert post is not None
    assert post.name == "sendTestNotification"
    assert get is not None
    assert get.name == "getSubscriptionById"


def test_precedence_among_synthetic_templates() -> None:
    rows: list[Row] = [
        ("t", "byParams", "GET", "/a/{x}/{y}", None, None),
        ("t", "literalRight", "GET", "/a/{x}/c", None, None),
        ("t", "literalLeft", "GET", "/a/b/{y}", None, None),
        ("t", "allLiteral", "GET", "/a/b/c", None, None),
        ("t", "paramFirst", "GET", "/{x}/z", None, None),
    ]
    index = OperationIndex(rows)
    names = {
        path: getattr(index.match("GET", path), "name", None)
        for path in ("/a/b/c", "/a/b/q", "/a/q/c", "/a/q/r", "/q/z", "/a/z")
    }
    assert names == {
        "/a/b/c": "allLiteral",
        "/a/b/q": "literalLeft",
        "/a/q/c": "literalRight",
        "/a/q/r": "byParams",
        "/q/z": "paramFirst",
        "/a/z": "paramFirst",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", ""),
        ("GET", "orders/v0/orders"),
        ("GET", "/orders/v0/orders/"),  # a trailing slash is another path
        ("GET", "/orders/v0/orders//address"),  # an empty order id
        ("GET", "/orders/v0/nothing"),
        ("GET", "/orders/v0/orders/1/address/extra"),
        ("PUT", "/orders/v0/orders"),
        ("GET", "/unknown/api"),
        ("GET", "/ORDERS/v0/orders"),  # literal segments compare exactly
    ],
)
def test_unknown_paths_match_nothing(method: str, path: str) -> None:
    assert INDEX.match(method, path) is None


def test_method_case_is_ignored() -> None:
    found = INDEX.match("get", "/orders/v0/orders")
    assert found is not None
    assert found.name == "getOrders"


@pytest.mark.parametrize(
    ("method", "name"),
    [("GET", "getListingsItem"), ("PUT", "putListingsItem"), ("PATCH", "patchListingsItem")],
)
def test_percent_encoded_ids_are_one_segment(method: str, name: str) -> None:
    path = "/listings/2021-08-01/items/A1SELLER/MY%20SKU%2F1"
    found = INDEX.match(method, path + "?marketplaceIds=ATVPDKIKX0DER")
    assert found is not None
    assert (found.api, found.name) == ("listingsItems_2021-08-01", name)


def test_every_hand_written_key_names_a_real_operation() -> None:
    known = {(row[2], row[3]) for row in TABLE}
    assert known >= RESTRICTED
    assert known >= DATA_ELEMENTS
    assert known >= set(GRANTLESS)
    assert not RESTRICTED & DATA_ELEMENTS


ALWAYS_RESTRICTED = [
    ("ordersV0", "getOrderAddress"),
    ("ordersV0", "getOrderBuyerInfo"),
    ("ordersV0", "getOrderItemsBuyerInfo"),
    ("ordersV0", "getOrderRegulatedInfo"),
    ("merchantFulfillmentV0", "getShipment"),
    ("merchantFulfillmentV0", "createShipment"),
    ("merchantFulfillmentV0", "cancelShipment"),
    ("easyShip_2022-03-23", "createScheduledPackageBulk"),
    *(
        (api, name)
        for api in ("vendorDirectFulfillmentOrdersV1", "vendorDirectFulfillmentOrders_2021-12-28")
        for name in ("getOrders", "getOrder")
    ),
    *(
        (api, name)
        for api in (
            "vendorDirectFulfillmentShippingV1",
            "vendorDirectFulfillmentShipping_2021-12-28",
        )
        for name in (
            "getShippingLabels",
            "getShippingLabel",
            "getPackingSlips",
            "getPackingSlip",
            "getCustomerInvoices",
            "getCustomerInvoice",
        )
    ),
    ("vendorDirectFulfillmentShipping_2021-12-28", "createShippingLabels"),
]
WITH_DATA_ELEMENTS = [("ordersV0", n) for n in ("getOrders", "getOrder", "getOrderItems")]


def test_restricted_operations_are_exactly_the_listed_ones() -> None:
    restricted = {(op.api, op.name) for op in INDEX.operations if op.restricted}
    assert restricted == set(ALWAYS_RESTRICTED)
    for api, name in ALWAYS_RESTRICTED:
        op = op_named(api, name)
        assert op.needs_rdt(wants_data_elements=False)
        assert not op.data_elements


def test_orders_pii_operations_need_an_rdt_only_for_data_elements() -> None:
    takes_elements = {(op.api, op.name) for op in INDEX.operations if op.data_elements}
    assert takes_elements == set(WITH_DATA_ELEMENTS)
    for api, name in WITH_DATA_ELEMENTS:
        op = op_named(api, name)
        assert not op.restricted
        assert not op.needs_rdt(wants_data_elements=False)
        assert op.needs_rdt(wants_data_elements=True)


def test_look_alike_operations_are_not_restricted() -> None:
    # same operation ids in other APIs, and the report document (type unknown to the proxy)
    for api, name in [
        ("fulfillmentInboundV0", "getShipments"),
        ("externalFulfillmentShipments_2024-09-11", "getShipment"),
        ("orders_2026-01-01", "getOrder"),
        ("reports_2021-06-30", "getReportDocument"),
        ("vendorDirectFulfillmentShipping_2021-12-28", "submitShippingLabelRequest"),
    ]:
        op = op_named(api, name)
        assert not op.needs_rdt(wants_data_elements=True)


def test_grantless_scopes() -> None:
    scopes = {op.name: op.grantless_scope for op in INDEX.operations if op.grantless_scope}
    notifications = [
        "getDestinations",
        "createDestination",
        "getDestination",
        "deleteDestination",
        "getSubscriptionById",
        "deleteSubscriptionById",
    ]
    assert scopes == {
        **dict.fromkeys(notifications, NOTIFICATIONS_SCOPE),
        "rotateApplicationClientSecret": ROTATION_SCOPE,
    }
    assert op_named("notifications", "getSubscription").grantless_scope is None
    assert op_named("notifications", "createSubscription").grantless_scope is None


def test_flags_agree_with_the_emulator() -> None:
    """The emulator plays Amazon from its own table; the two must not drift apart."""
    for op in INDEX.operations:
        assert policy.grantless_scope(op.method, op.path_template) == op.grantless_scope
        assert policy.accepts_data_elements(op.method, op.path_template) == op.data_elements
        if policy.is_restricted(op.method, op.path_template):
            assert op.restricted, op.name


@pytest.mark.parametrize(
    ("name", "rate", "burst"),
    [
        ("getOrders", 0.0167, 20),
        ("getOrder", 0.5, 30),
        ("getOrderItems", 0.5, 30),
        ("getOrderAddress", 0.5, 30),
        ("getOrderBuyerInfo", 0.5, 30),
        ("confirmShipment", 2.0, 10),
    ],
)
def test_orders_v0_usage_plans_match_facts(name: str, rate: float, burst: int) -> None:
    op = op_named("ordersV0", name)
    assert (op.rate_per_s, op.burst) == (rate, burst)


def test_priority_apis_all_have_usage_plans() -> None:
    prefixes = ("orders", "reports", "feeds", "catalog", "listings", "tokens", "notif", "sellers")
    missing = [
        (op.api, op.name)
        for op in INDEX.operations
        if op.api.startswith(prefixes) and (op.rate_per_s is None or op.burst is None)
    ]
    assert missing == []
    rdt = op_named("tokens_2021-03-01", "createRestrictedDataToken")
    assert (rdt.rate_per_s, rdt.burst) == (1.0, 10)  # docs/sp-api-facts.md §6


@requires_models
def test_generated_table_is_up_to_date() -> None:
    script = REPO / "scripts" / "gen_operations_table.py"
    result = subprocess.run(
        [sys.executable, str(script), str(MODELS), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
