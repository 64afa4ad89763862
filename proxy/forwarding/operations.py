"""Which SP-API operation a request is, and what it needs: an RDT, a grantless scope, a rate.

The facts come from two places. The generated :mod:`proxy.forwarding.operations_table` (from
Amazon's models) gives every operation's method, path template and default usage plan. The
hand-written tables below (docs/sp-api-facts.md §4 and §6) say which operations need a restricted
data token (RDT) and which take a grantless ``client_credentials`` token; they are keyed by method
and path template because operation ids repeat across APIs (``getShipment`` is Merchant Fulfillment,
which is restricted, and also Fulfillment Inbound and External Fulfillment, which are not).

RDT needs come in two strengths:

* ``restricted``: the operation always answers with personal data and refuses the LWA token.
* ``data_elements``: getOrders, getOrder and getOrderItems answer an LWA token with the personal
  data left out, and include it only under an RDT naming ``dataElements``. So they need an RDT
  only when the client asks for that data (``x-spapi-data-elements``): ``restricted`` is False
  for them and :meth:`Operation.needs_rdt` combines the two.

Matching works on the raw (percent-encoded) path: a parameter matches exactly one non-empty
segment as received, literal segments compare exactly. Templates are indexed by method, segment
count and first segment, so a lookup is one dict access and a few string comparisons.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.forwarding.operations_table import TABLE, Row

NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"

# Operations that refuse an LWA token and need an RDT (docs/sp-api-facts.md §6).
# Reports' getReportDocument is left out on purpose: only documents of restricted report types
# need an RDT, and the proxy cannot tell the report type from GET /documents/{id}. A client that
# fetches those documents sends its own RDT in x-spapi-rdt.
# Vendor Direct Fulfillment: the orders and the label/packing-slip/invoice reads of both model
# versions, plus 2021-12-28 createShippingLabels, whose answer is the shipping labels themselves.
RESTRICTED: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/orders/v0/orders/{orderId}/address"),
        ("GET", "/orders/v0/orders/{orderId}/buyerInfo"),
        ("GET", "/orders/v0/orders/{orderId}/orderItems/buyerInfo"),
        ("GET", "/orders/v0/orders/{orderId}/regulatedInfo"),
        ("GET", "/mfn/v0/shipments/{shipmentId}"),
        ("POST", "/mfn/v0/shipments"),
        ("DELETE", "/mfn/v0/shipments/{shipmentId}"),
        ("POST", "/easyShip/2022-03-23/packages/bulk"),
        ("GET", "/vendor/directFulfillment/orders/v1/purchaseOrders"),
        ("GET", "/vendor/directFulfillment/orders/v1/purchaseOrders/{purchaseOrderNumber}"),
        ("GET", "/vendor/directFulfillment/orders/2021-12-28/purchaseOrders"),
        ("GET", "/vendor/directFulfillment/orders/2021-12-28/purchaseOrders/{purchaseOrderNumber}"),
        *(
            ("GET", f"/vendor/directFulfillment/shipping/{version}/{resource}{suffix}")
            for version in ("v1", "2021-12-28")
            for resource in ("shippingLabels", "packingSlips", "customerInvoices")
            for suffix in ("", "/{purchaseOrderNumber}")
        ),
        (
            "POST",
            "/vendor/directFulfillment/shipping/2021-12-28/shippingLabels/{purchaseOrderNumber}",
        ),
    }
)

# Operations whose RDT may name dataElements (buyerInfo, shippingAddress, buyerTaxInformation).
DATA_ELEMENTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/orders/v0/orders"),
        ("GET", "/orders/v0/orders/{orderId}"),
        ("GET", "/orders/v0/orders/{orderId}/orderItems"),
    }
)

# Grantless operations: the client_credentials scope each one needs (docs/sp-api-facts.md §4).
GRANTLESS: dict[tuple[str, str], str] = {
    ("GET", "/notifications/v1/destinations"): NOTIFICATIONS_SCOPE,
    ("POST", "/notifications/v1/destinations"): NOTIFICATIONS_SCOPE,
    ("GET", "/notifications/v1/destinations/{destinationId}"): NOTIFICATIONS_SCOPE,
    ("DELETE", "/notifications/v1/destinations/{destinationId}"): NOTIFICATIONS_SCOPE,
    (
        "GET",
        "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}",
    ): NOTIFICATIONS_SCOPE,
    (
        "DELETE",
        "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}",
    ): NOTIFICATIONS_SCOPE,
    ("POST", "/applications/2023-11-30/clientSecret"): ROTATION_SCOPE,
}


@dataclass(frozen=True)
class Operation:
    """One SP-API operation and what calling it takes."""

    api: str  # the model's file stem, e.g. "ordersV0"
    name: str  # the operationId, e.g. "getOrderAddress"
    method: str
    path_template: str
    rate_per_s: float | None  # Amazon's default usage plan; None when the model gives none
    burst: int | None
    restricted: bool  # always needs an RDT
    data_elements: bool  # needs an RDT only for personal data; its RDT may name dataElements
    grantless_scope: str | None

    def needs_rdt(self, wants_data_elements: bool) -> bool:
        """Whether to call with an RDT, given whether the client asked for personal data."""
        return self.restricted or (self.data_elements and wants_data_elements)


def operation_from_row(row: Row) -> Operation:
    api, name, method, template, rate, burst = row
    key = (method, template)
    return Operation(
        api=api,
        name=name,
        method=method,
        path_template=template,
        rate_per_s=rate,
        burst=burst,
        restricted=key in RESTRICTED,
        data_elements=key in DATA_ELEMENTS,
        grantless_scope=GRANTLESS.get(key),
    )


# A compiled template: literal segments as (position, text), and the operation.
_Compiled = tuple[tuple[tuple[int, str], ...], Operation]


class OperationIndex:
    """Operations by method and raw path, for the request hot path."""

    def __init__(self, rows: Iterable[Row] = TABLE) -> None:
        self.operations = tuple(operation_from_row(row) for row in rows)
        buckets: defaultdict[tuple[str, int, str | None], list[_Compiled]] = defaultdict(list)
        for op in self.operations:
            segments = op.path_template.split("/")
            first = None if _is_param(segments[1]) else segments[1]
            # segment 0 is always "" and segment 1 is the bucket key: compare from 2 on
            literals = tuple((i, s) for i, s in enumerate(segments) if i >= 2 and not _is_param(s))
            buckets[(op.method, len(segments), first)].append((literals, op))
        # Most literal segments first, then literals further left: the first fit wins, so
        # /a/b/{x} beats /a/{x}/{y} and /a/b/{x} beats /a/{x}/c.
        for candidates in buckets.values():
            candidates.sort(key=lambda c: (-len(c[0]), [i for i, _ in c[0]]))
        self._buckets = dict(buckets)
        self._param_first = any(key[2] is None for key in self._buckets)

    def match(self, method: str, raw_path: str) -> Operation | None:
        """The operation for ``method`` and the raw path (a query string is ignored)."""
        path = raw_path.partition("?")[0]
        # a parameter never matches an empty segment and no template has an empty literal
        if not path.startswith("/") or path.endswith("/") or "//" in path:
            return None
        segments = path.split("/")
        method = method.upper()
        found = self._first_fit(self._buckets.get((method, len(segments), segments[1])), segments)
        if found is None and self._param_first:  # no SP-API template starts with a parameter
            found = self._first_fit(self._buckets.get((method, len(segments), None)), segments)
        return found

    @staticmethod
    def _first_fit(candidates: list[_Compiled] | None, segments: list[str]) -> Operation | None:
        if candidates is None:
            return None
        for literals, op in candidates:
            # a plain loop, not all(<generator>): this is the hot path and it is ~2x faster
            for i, text in literals:
                if segments[i] != text:
                    break
            else:
                return op
        return None


def _is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")
