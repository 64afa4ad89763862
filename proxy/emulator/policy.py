"""Which SP-API operations are grantless or restricted (need an RDT), by method and path.

Keyed by method and path template, not operation id: ids repeat across APIs (``getShipment``
is both Merchant Fulfillment, which is restricted, and Fulfillment Inbound, which is not).
Sources: docs/sp-api-facts.md §4 and §6.
"""

from __future__ import annotations

import re

NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"
GRANTLESS_SCOPES_ALLOWED = frozenset({NOTIFICATIONS_SCOPE, ROTATION_SCOPE})

# (METHOD, template with {} for every parameter) -> the client_credentials scope it needs.
GRANTLESS: dict[tuple[str, str], str] = {
    ("GET", "/notifications/v1/destinations"): NOTIFICATIONS_SCOPE,
    ("POST", "/notifications/v1/destinations"): NOTIFICATIONS_SCOPE,
    ("GET", "/notifications/v1/destinations/{}"): NOTIFICATIONS_SCOPE,
    ("DELETE", "/notifications/v1/destinations/{}"): NOTIFICATIONS_SCOPE,
    ("GET", "/notifications/v1/subscriptions/{}/{}"): NOTIFICATIONS_SCOPE,
    ("DELETE", "/notifications/v1/subscriptions/{}/{}"): NOTIFICATIONS_SCOPE,
    ("POST", "/applications/2023-11-30/clientSecret"): ROTATION_SCOPE,
}

# Operations that answer only to an RDT: an LWA token alone is refused.
RDT_REQUIRED: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/orders/v0/orders/{}/address"),
        ("GET", "/orders/v0/orders/{}/buyerInfo"),
        ("GET", "/orders/v0/orders/{}/orderItems/buyerInfo"),
        ("GET", "/orders/v0/orders/{}/regulatedInfo"),
        ("GET", "/mfn/v0/shipments/{}"),
        ("POST", "/mfn/v0/shipments"),
        ("DELETE", "/mfn/v0/shipments/{}"),
        ("POST", "/easyShip/2022-03-23/packages/bulk"),
        # Vendor Direct Fulfillment (docs/sp-api-facts.md §6): orders, and shipping labels, packing
        # slips and customer invoices, in both model versions.
        ("GET", "/vendor/directFulfillment/orders/v1/purchaseOrders"),
        ("GET", "/vendor/directFulfillment/orders/v1/purchaseOrders/{}"),
        ("GET", "/vendor/directFulfillment/orders/2021-12-28/purchaseOrders"),
        ("GET", "/vendor/directFulfillment/orders/2021-12-28/purchaseOrders/{}"),
        *(
            ("GET", f"/vendor/directFulfillment/shipping/{version}/{resource}{suffix}")
            for version in ("v1", "2021-12-28")
            for resource in ("shippingLabels", "packingSlips", "customerInvoices")
            for suffix in ("", "/{}")
        ),
        ("POST", "/vendor/directFulfillment/shipping/2021-12-28/shippingLabels/{}"),
    }
)

# Operations that accept an LWA token (personal data left out) or an RDT carrying
# dataElements (personal data included); only these may name dataElements in an RDT request.
RDT_DATA_ELEMENTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/orders/v0/orders"),
        ("GET", "/orders/v0/orders/{}"),
        ("GET", "/orders/v0/orders/{}/orderItems"),
    }
)
DATA_ELEMENTS = frozenset({"buyerInfo", "shippingAddress", "buyerTaxInformation"})

# Operations an RDT may cover although an LWA token suffices for some of their resources:
# getReportDocument needs one only for restricted report types (docs/sp-api-facts.md §6).
RDT_FOR_SOME: frozenset[tuple[str, str]] = frozenset({("GET", "/reports/2021-06-30/documents/{}")})

_PARAM = re.compile(r"\{[^/{}]*\}")


def template_key(method: str, path_template: str) -> tuple[str, str]:
    """``("GET", "/orders/v0/orders/{orderId}")`` -> ``("GET", "/orders/v0/orders/{}")``."""
    return method.upper(), _PARAM.sub("{}", path_template)


def grantless_scope(method: str, path_template: str) -> str | None:
    return GRANTLESS.get(template_key(method, path_template))


def is_restricted(method: str, path_template: str) -> bool:
    return template_key(method, path_template) in RDT_REQUIRED


def accepts_rdt(method: str, path_template: str) -> bool:
    key = template_key(method, path_template)
    return key in RDT_REQUIRED or key in RDT_DATA_ELEMENTS or key in RDT_FOR_SOME


def accepts_data_elements(method: str, path_template: str) -> bool:
    return template_key(method, path_template) in RDT_DATA_ELEMENTS
