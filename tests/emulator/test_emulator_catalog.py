"""The case matcher and catalog resolution, on hand-written operations."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.emulator.catalog import (
    Case,
    Catalog,
    RequestView,
    builtin_operations,
    find_case,
    make_operation,
    operations_from_document,
)

ORDERS = make_operation(
    "GET",
    "/orders/v0/orders",
    "getOrders",
    [
        Case(200, {}, {"fallback": True}),
        Case(200, {"CreatedAfter": "A", "MarketplaceIds": ["M1"]}, {"one": True}),
        Case(400, {"CreatedAfter": "B"}, {"bad": True}),
        Case(200, {"MaxResultsPerPage": 10, "IsISPU": True}, {"typed": True}),
    ],
    param_locations={
        "CreatedAfter": "query",
        "MarketplaceIds": "query",
        "MaxResultsPerPage": "query",
        "IsISPU": "query",
    },
)


def _view(query: list[tuple[str, str]], body: bytes = b"", **path: str) -> RequestView:
    return RequestView(path, query, (), body)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ([("CreatedAfter", "A"), ("MarketplaceIds", "M1")], {"one": True}),
        ([("MarketplaceIds", "M1"), ("CreatedAfter", "A")], {"one": True}),
        ([("CreatedAfter", "A"), ("MarketplaceIds", "M1,M2")], {"fallback": True}),
        ([("CreatedAfter", "B")], {"bad": True}),
        ([("MaxResultsPerPage", "10"), ("IsISPU", "true")], {"typed": True}),
        ([("MaxResultsPerPage", "10"), ("IsISPU", "yes")], {"fallback": True}),
        ([], {"fallback": True}),
    ],
)
def test_most_specific_matching_case_wins(
    query: list[tuple[str, str]], expected: dict[str, Any]
) -> None:
    case = find_case(ORDERS, _view(query))
    assert case is not None
    assert case.response_body == expected


def test_lists_match_repeated_keys_and_csv() -> None:
    op = make_operation(
        "GET", "/x", "x", [Case(200, {"ids": ["a", "b"]}, 1)], param_locations={"ids": "query"}
    )
    assert find_case(op, _view([("ids", "a,b")])) is not None
    assert find_case(op, _view([("ids", "a"), ("ids", "b")])) is not None
    assert find_case(op, _view([("ids", "b"), ("ids", "a")])) is None
    assert find_case(op, _view([("ids", "a")])) is None


def test_body_and_path_parameters() -> None:
    op = make_operation(
        "POST",
        "/things/{thingId}",
        "createThing",
        [Case(201, {"thingId": "T 1", "body": {"n": 1, "tags": ["x"]}}, "made")],
        param_locations={"thingId": "path"},
    )
    resolved = Catalog([op]).resolve("POST", "/things/T%201")
    assert resolved is not None
    body = json.dumps({"tags": ["x"], "n": 1}).encode()
    assert find_case(op, RequestView(resolved.path_params, (), (), body)) is not None
    assert find_case(op, RequestView(resolved.path_params, (), (), b'{"n":2}')) is None


def test_literal_segments_beat_parameters_and_first_layer_wins() -> None:
    by_param = make_operation("GET", "/a/{id}", "byParam")
    literal = make_operation("GET", "/a/special", "literal")
    shadowed = make_operation("GET", "/a/{other}", "shadowed")
    catalog = Catalog([by_param, literal, shadowed])
    assert len(catalog) == 2
    special = catalog.resolve("GET", "/a/special")
    assert special is not None
    assert special.operation.operation_id == "literal"
    other = catalog.resolve("GET", "/a/42")
    assert other is not None
    assert other.operation.operation_id == "byParam"
    assert catalog.resolve("POST", "/a/42") is None
    assert catalog.methods_for("/a/42") == ["GET"]
    assert catalog.resolve("GET", "/a/42/") is None


def test_loader_handles_bare_values_and_refs() -> None:
    doc = {
        "parameters": {"Id": {"name": "id", "in": "path", "type": "string"}},
        "paths": {
            "/notifications/v1/destinations/{id}": {
                "parameters": [{"$ref": "#/parameters/Id"}],
                "get": {
                    "operationId": "getDestination",
                    "responses": {
                        "200": {
                            "x-amzn-api-sandbox": {
                                "static": [
                                    {"request": {"parameters": {"id": "bare"}}, "response": {}},
                                    {"request": {"parameters": {}}, "response": {"any": 1}},
                                ]
                            }
                        },
                        "default": {"description": "ignored"},
                    },
                },
            }
        },
    }
    (op,) = operations_from_document(doc)
    assert op.param_locations == {"id": "path"}
    assert [c.params for c in op.cases] == [{"id": "bare"}, {}]
    assert (op.grantless, op.grantless_scope) == (True, "sellingpartnerapi::notifications")


def test_builtin_catalog_flags() -> None:
    ops = {op.operation_id: op for op in builtin_operations()}
    assert ops["getOrderAddress"].restricted
    assert ops["getOrderBuyerInfo"].restricted
    assert not ops["getOrders"].restricted
    assert ops["getDestinations"].grantless
    assert ops["createRestrictedDataToken"].dynamic
    assert {"getOrders", "getOrder", "getOrderItems", "getMarketplaceParticipations"} <= set(ops)
