"""The documents behind Reports and Feeds: generated report contents and processing reports.

All rows are the emulator's own invented data; only the column names follow Amazon's reports,
so a user's parser meets the header it will meet in production.
"""

from __future__ import annotations

import json
import re

TSV = "text/tab-separated-values; charset=UTF-8"
PLAIN = "text/plain; charset=UTF-8"
JSON_TYPE = "application/json; charset=UTF-8"
XML_TYPE = "text/xml; charset=UTF-8"

ORDERS_COLUMNS = [
    "amazon-order-id",
    "merchant-order-id",
    "purchase-date",
    "last-updated-date",
    "order-status",
    "fulfillment-channel",
    "sales-channel",
    "order-channel",
    "ship-service-level",
    "product-name",
    "sku",
    "asin",
    "item-status",
    "quantity",
    "currency",
    "item-price",
    "item-tax",
    "shipping-price",
    "shipping-tax",
    "gift-wrap-price",
    "gift-wrap-tax",
    "item-promotion-discount",
    "ship-promotion-discount",
    "ship-city",
    "ship-state",
    "ship-postal-code",
    "ship-country",
    "promotion-ids",
    "is-business-order",
    "purchase-order-number",
    "price-designation",
]
ORDERS_ROWS = (
    ("902-0000001-0000001", "", "2024-03-01T10:00:00+00:00", "2024-03-01T12:00:00+00:00",
     "Shipped", "Merchant", "Amazon.com", "", "Standard", "Emulator Mug, blue", "EMU-MUG-1",
     "B0EMULATOR1", "Shipped", "2", "USD", "19.98", "1.60", "4.99", "0.00", "", "", "0.00",
     "0.00", "SEATTLE", "WA", "98109", "US", "", "false", "", ""),
    ("902-0000002-0000002", "", "2024-03-02T09:30:00+00:00", "2024-03-02T09:31:00+00:00",
     "Pending", "Amazon", "Amazon.com", "", "Expedited", "Emulator Tea Towel", "EMU-TOWEL-1",
     "B0EMULATOR2", "Unshipped", "1", "USD", "7.50", "0.60", "0.00", "0.00", "", "", "0.00",
     "0.00", "AUSTIN", "TX", "73301", "US", "", "true", "PO-0001", "BusinessPrice"),
)  # fmt: skip

LISTINGS_COLUMNS = [
    "item-name",
    "item-description",
    "listing-id",
    "seller-sku",
    "price",
    "quantity",
    "open-date",
    "image-url",
    "item-is-marketplace",
    "product-id-type",
    "zshop-shipping-fee",
    "item-note",
    "item-condition",
    "zshop-category1",
    "zshop-browse-path",
    "zshop-storefront-feature",
    "asin1",
    "asin2",
    "asin3",
    "will-ship-internationally",
    "expedited-shipping",
    "zshop-boldface",
    "product-id",
    "bid-for-featured-placement",
    "add-delete",
    "pending-quantity",
    "fulfillment-channel",
    "merchant-shipping-group",
    "status",
]
LISTINGS_ROWS = (
    ("Emulator Mug, blue", "", "0301EMU0001", "EMU-MUG-1", "9.99", "40",
     "2024-01-15 08:00:00 PST", "", "y", "1", "", "", "11", "", "", "", "B0EMULATOR1", "", "",
     "", "", "", "B0EMULATOR1", "", "", "0", "DEFAULT", "Migrated Template", "Active"),
    ("Emulator Tea Towel", "", "0301EMU0002", "EMU-TOWEL-1", "7.50", "",
     "2024-02-01 08:00:00 PST", "", "y", "1", "", "", "11", "", "", "", "B0EMULATOR2", "", "",
     "", "", "", "B0EMULATOR2", "", "", "0", "AMAZON_NA", "Migrated Template", "Active"),
)  # fmt: skip

SETTLEMENT_COLUMNS = [
    "settlement-id",
    "settlement-start-date",
    "settlement-end-date",
    "deposit-date",
    "total-amount",
    "currency",
    "transaction-type",
    "order-id",
    "merchant-order-id",
    "adjustment-id",
    "shipment-id",
    "marketplace-name",
    "amount-type",
    "amount-description",
    "amount",
    "fulfillment-id",
    "posted-date",
    "posted-date-time",
    "order-item-code",
    "merchant-order-item-id",
    "merchant-adjustment-item-id",
    "sku",
    "quantity-purchased",
    "promotion-id",
]
_SETTLEMENT = "12345678901"
_ORDER = (*[""] * 5, "Order", "902-0000001-0000001", "", "", "SEMULATOR1", "Amazon.com")
_POSTED = ("MFN", "2024-03-02", "2024-03-02 10:00:00 UTC", "40000000000001", "", "", "EMU-MUG-1")
SETTLEMENT_ROWS = (
    (_SETTLEMENT, "2024-03-01 00:00:00 UTC", "2024-03-15 00:00:00 UTC",
     "2024-03-17 00:00:00 UTC", "22.67", "USD", *[""] * 18),
    (_SETTLEMENT, *_ORDER, "ItemPrice", "Principal", "19.98", *_POSTED, "2", ""),
    (_SETTLEMENT, *_ORDER, "ItemPrice", "Shipping", "4.99", *_POSTED, "2", ""),
    (_SETTLEMENT, *_ORDER, "ItemFees", "Commission", "-2.30", *_POSTED, "2", ""),
)  # fmt: skip

GENERATED = {
    "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL": (ORDERS_COLUMNS, ORDERS_ROWS),
    "GET_MERCHANT_LISTINGS_ALL_DATA": (LISTINGS_COLUMNS, LISTINGS_ROWS),
    "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE": (SETTLEMENT_COLUMNS, SETTLEMENT_ROWS),
}

# Report types whose document holds personal data: getReportDocument needs an RDT for them.
RESTRICTED_REPORT_TYPES = frozenset(
    {
        "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
        "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_INVOICING",
        "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_TAX",
        "GET_FLAT_FILE_ACTIONABLE_ORDER_DATA_SHIPPING",
        "GET_FLAT_FILE_ORDER_REPORT_DATA_INVOICING",
        "GET_FLAT_FILE_ORDER_REPORT_DATA_SHIPPING",
        "GET_FLAT_FILE_ORDER_REPORT_DATA_TAX",
        "GET_FLAT_FILE_ORDERS_RECONCILIATION_DATA_INVOICING",
        "GET_FLAT_FILE_ORDERS_RECONCILIATION_DATA_SHIPPING",
        "GET_FLAT_FILE_ORDERS_RECONCILIATION_DATA_TAX",
        "GET_ORDER_REPORT_DATA_INVOICING",
        "GET_ORDER_REPORT_DATA_SHIPPING",
        "GET_ORDER_REPORT_DATA_TAX",
        "GET_EASYSHIP_DOCUMENTS",
        "GET_GST_MTR_B2B_CUSTOM",
        "GET_VAT_TRANSACTION_DATA",
        "SC_VAT_TAX_REPORT",
    }
)


def report_content(report_type: str) -> tuple[bytes, str]:
    """``(content, content type)`` of a finished report of ``report_type``."""
    generated = GENERATED.get(report_type)
    if generated is None:
        known = ", ".join(sorted(GENERATED))
        text = (
            f"spapi-proxy emulator placeholder for {report_type}: the emulator generates "
            f"content only for {known}; this document stands in for any other report type.\n"
        )
        return text.encode(), PLAIN
    columns, rows = generated
    lines = ["\t".join(columns), *("\t".join(row) for row in rows)]
    return ("\n".join(lines) + "\n").encode(), TSV


_XML_MESSAGE = re.compile(rb"<Message[\s>]")


def count_records(content: bytes) -> int:
    """Records in an uploaded feed: JSON messages, XML <Message>s, or flat-file data lines."""
    stripped = content.lstrip()
    if stripped.startswith(b"{"):
        try:
            messages = json.loads(content).get("messages", [])
        except (ValueError, AttributeError):
            return 0
        return len(messages) if isinstance(messages, list) else 0
    if stripped.startswith(b"<"):
        return len(_XML_MESSAGE.findall(content))
    lines = [line for line in content.decode("utf-8", "replace").splitlines() if line.strip()]
    # Listing-loader templates start with a TemplateType= line and two header rows.
    headers = 3 if lines and lines[0].startswith("TemplateType=") else 1
    return max(0, len(lines) - headers)


def processing_report(feed_id: str, content: bytes) -> tuple[bytes, str]:
    """The processing report of a feed: every record counted as accepted, in the feed's shape."""
    records = count_records(content)
    stripped = content.lstrip()
    if stripped.startswith(b"{"):
        report = {
            "header": {"sellerId": "A1EMULATORSELLER", "version": "2.0", "feedId": feed_id},
            "issues": [],
            "summary": {
                "errors": 0,
                "warnings": 0,
                "messagesProcessed": records,
                "messagesAccepted": records,
                "messagesInvalid": 0,
            },
        }
        return json.dumps(report).encode(), JSON_TYPE
    if stripped.startswith(b"<"):
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<AmazonEnvelope>\n'
            "<Header><DocumentVersion>1.02</DocumentVersion>"
            "<MerchantIdentifier>A1EMULATORSELLER</MerchantIdentifier></Header>\n"
            "<MessageType>ProcessingReport</MessageType>\n<Message><MessageID>1</MessageID>"
            f"<ProcessingReport><DocumentTransactionID>{feed_id}</DocumentTransactionID>"
            "<StatusCode>Complete</StatusCode><ProcessingSummary>"
            f"<MessagesProcessed>{records}</MessagesProcessed>"
            f"<MessagesSuccessful>{records}</MessagesSuccessful>"
            "<MessagesWithError>0</MessagesWithError><MessagesWithWarning>0</MessagesWithWarning>"
            "</ProcessingSummary></ProcessingReport></Message>\n</AmazonEnvelope>\n"
        )
        return xml.encode(), XML_TYPE
    text = (
        "Feed Processing Summary:\n"
        f"\tNumber of records processed\t\t{records}\n"
        f"\tNumber of records successful\t\t{records}\n"
    )
    return text.encode(), PLAIN
