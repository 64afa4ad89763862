"""Stateful Reports and Feeds: a report or a feed runs start to finish on the emulator alone."""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yarl

from tests.emulator.conftest import Emulator

MakeEmu = Callable[..., Awaitable[Emulator]]
REPORTS = "/reports/2021-06-30"
FEEDS = "/feeds/2021-06-30"
ORDERS_REPORT = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL"
MARKETPLACE = "ATVPDKIKX0DER"


async def call(emu: Emulator, token: str, method: str, target: str, body: Any = None) -> Any:
    headers = {"x-amz-access-token": token}
    data = None
    if body is not None:
        headers["content-type"] = "application/json"
        data = json.dumps(body).encode()
    response = await emu.send(method, target, headers, data)
    text = await response.text()
    return response.status, (json.loads(text) if text else None)


async def download(emu: Emulator, url: str) -> tuple[int, bytes, str]:
    async with emu.client.session.get(yarl.URL(url, encoded=True)) as response:
        return response.status, await response.read(), response.headers.get("content-type", "")


async def run_report(emu: Emulator, token: str, report_type: str) -> dict[str, Any]:
    status, created = await call(
        emu, token, "POST", f"{REPORTS}/reports",
        {"reportType": report_type, "marketplaceIds": [MARKETPLACE]},
    )  # fmt: skip
    assert status == 202, created
    emu.clock.advance(60)
    status, report = await call(emu, token, "GET", f"{REPORTS}/reports/{created['reportId']}")
    assert status == 200
    assert report["processingStatus"] == "DONE", report
    status, document = await call(
        emu, token, "GET", f"{REPORTS}/documents/{report['reportDocumentId']}"
    )
    assert status == 200, document
    return dict(document)


async def test_report_goes_in_queue_in_progress_done_on_the_emulators_clock_and_downloads(
    make_emu: MakeEmu,
) -> None:
    emu = await make_emu(queued_s=1.0, in_progress_s=2.0)
    token = await emu.token()
    status, created = await call(
        emu, token, "POST", f"{REPORTS}/reports",
        {"reportType": ORDERS_REPORT, "marketplaceIds": [MARKETPLACE]},
    )  # fmt: skip
    assert status == 202
    report_url = f"{REPORTS}/reports/{created['reportId']}"

    seen = []
    for _ in range(3):
        status, report = await call(emu, token, "GET", report_url)
        assert status == 200
        seen.append(report["processingStatus"])
        emu.clock.advance(1.5)
    assert seen == ["IN_QUEUE", "IN_PROGRESS", "DONE"]
    assert report["reportType"] == ORDERS_REPORT
    assert report["marketplaceIds"] == [MARKETPLACE]

    status, document = await call(
        emu, token, "GET", f"{REPORTS}/documents/{report['reportDocumentId']}"
    )
    assert status == 200
    assert "compressionAlgorithm" not in document
    assert document["url"].startswith(emu.base + "/")
    status, content, content_type = await download(emu, document["url"])
    assert status == 200
    assert content_type.startswith("text/tab-separated-values")
    header, *rows = content.decode().splitlines()
    columns = header.split("\t")
    assert columns[:3] == ["amazon-order-id", "merchant-order-id", "purchase-date"]
    assert rows
    assert all(len(row.split("\t")) == len(columns) for row in rows)


async def test_report_document_is_gzip_when_the_emulator_is_asked_to_compress(
    make_emu: MakeEmu,
) -> None:
    emu = await make_emu(queued_s=0.0, in_progress_s=0.0, gzip_reports=True)
    document = await run_report(emu, await emu.token(), "GET_MERCHANT_LISTINGS_ALL_DATA")
    assert document["compressionAlgorithm"] == "GZIP"
    _, content, _ = await download(emu, document["url"])
    header = gzip.decompress(content).decode().splitlines()[0].split("\t")
    assert {"seller-sku", "asin1", "price", "quantity"} <= set(header)


async def test_settlement_report_has_its_columns_and_other_types_a_clear_placeholder(
    make_emu: MakeEmu,
) -> None:
    emu = await make_emu(queued_s=0.0, in_progress_s=0.0)
    token = await emu.token()
    settlement = await run_report(emu, token, "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE")
    _, content, _ = await download(emu, settlement["url"])
    assert content.decode().startswith("settlement-id\tsettlement-start-date\t")

    other = await run_report(emu, token, "GET_FBA_MYI_UNSUPPRESSED_INVENTORY_DATA")
    _, content, _ = await download(emu, other["url"])
    assert "GET_FBA_MYI_UNSUPPRESSED_INVENTORY_DATA" in content.decode()
    assert "placeholder" in content.decode()


async def test_restricted_report_document_needs_an_rdt(make_emu: MakeEmu) -> None:
    emu = await make_emu(queued_s=0.0, in_progress_s=0.0)
    token = await emu.token()
    status, created = await call(
        emu, token, "POST", f"{REPORTS}/reports",
        {"reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
         "marketplaceIds": [MARKETPLACE]},
    )  # fmt: skip
    assert status == 202
    _, report = await call(emu, token, "GET", f"{REPORTS}/reports/{created['reportId']}")
    document_path = f"{REPORTS}/documents/{report['reportDocumentId']}"

    status, refused = await call(emu, token, "GET", document_path)
    assert status == 403
    assert refused["errors"][0]["code"] == "Unauthorized"

    status, rdt = await call(
        emu, token, "POST", "/tokens/2021-03-01/restrictedDataToken",
        {"restrictedResources": [{"method": "GET", "path": document_path}]},
    )  # fmt: skip
    assert status == 200, rdt
    status, document = await call(emu, rdt["restrictedDataToken"], "GET", document_path)
    assert status == 200
    assert document["url"].startswith(emu.base)


async def test_report_in_queue_can_be_cancelled_and_an_unknown_one_is_not_found(
    make_emu: MakeEmu,
) -> None:
    emu = await make_emu(queued_s=60.0, in_progress_s=60.0)
    token = await emu.token()
    _, created = await call(
        emu, token, "POST", f"{REPORTS}/reports",
        {"reportType": ORDERS_REPORT, "marketplaceIds": [MARKETPLACE]},
    )  # fmt: skip
    report_url = f"{REPORTS}/reports/{created['reportId']}"
    status, _ = await call(emu, token, "DELETE", report_url)
    assert status == 200
    _, report = await call(emu, token, "GET", report_url)
    assert report["processingStatus"] == "CANCELLED"
    assert "reportDocumentId" not in report

    status, missing = await call(emu, token, "GET", f"{REPORTS}/reports/999")
    assert status == 404
    assert missing["errors"][0]["code"] == "NotFound"
    status, bad = await call(
        emu, token, "POST", f"{REPORTS}/reports", {"reportType": ORDERS_REPORT}
    )
    assert status == 400
    assert "marketplaceIds" in bad["errors"][0]["details"]


FLAT_FILE = "sku\tprice\tquantity\nSKU-1\t9.99\t3\nSKU-2\t19.99\t0\n\nSKU-3\t5.00\t7\n"
LISTINGS_JSON = {
    "header": {"sellerId": "A1EMULATOR", "version": "2.0"},
    "messages": [
        {"messageId": 1, "sku": "SKU-1", "operationType": "DELETE"},
        {"messageId": 2, "sku": "SKU-2", "operationType": "DELETE"},
    ],
}


async def run_feed(
    emu: Emulator, token: str, feed_type: str, content_type: str, content: bytes
) -> tuple[dict[str, Any], bytes]:
    status, document = await call(
        emu, token, "POST", f"{FEEDS}/documents", {"contentType": content_type}
    )
    assert status == 201, document
    async with emu.client.session.put(
        yarl.URL(document["url"], encoded=True),
        data=content,
        headers={"content-type": content_type},
    ) as uploaded:
        assert uploaded.status == 200, await uploaded.text()
    status, created = await call(
        emu, token, "POST", f"{FEEDS}/feeds",
        {"feedType": feed_type, "marketplaceIds": [MARKETPLACE],
         "inputFeedDocumentId": document["feedDocumentId"]},
    )  # fmt: skip
    assert status == 202, created
    emu.clock.advance(60)
    status, feed = await call(emu, token, "GET", f"{FEEDS}/feeds/{created['feedId']}")
    assert status == 200
    assert feed["processingStatus"] == "DONE", feed
    status, result = await call(
        emu, token, "GET", f"{FEEDS}/documents/{feed['resultFeedDocumentId']}"
    )
    assert status == 200, result
    _, report, _ = await download(emu, result["url"])
    return feed, report


async def test_feed_uploads_then_is_done_with_a_report_counting_the_records(
    make_emu: MakeEmu,
) -> None:
    emu = await make_emu(queued_s=1.0, in_progress_s=1.0)
    token = await emu.token()
    feed, report = await run_feed(
        emu, token, "POST_FLAT_FILE_INVLOADER_DATA",
        "text/tab-separated-values; charset=UTF-8", FLAT_FILE.encode(),
    )  # fmt: skip
    assert feed["feedType"] == "POST_FLAT_FILE_INVLOADER_DATA"
    assert "Number of records processed\t\t3" in report.decode()

    _, report = await run_feed(
        emu, token, "JSON_LISTINGS_FEED", "application/json; charset=UTF-8",
        json.dumps(LISTINGS_JSON).encode(),
    )  # fmt: skip
    summary = json.loads(report)["summary"]
    assert summary["messagesProcessed"] == 2
    assert summary["messagesAccepted"] == 2


async def test_feed_upload_with_another_content_type_is_refused_like_s3(make_emu: MakeEmu) -> None:
    emu = await make_emu()
    token = await emu.token()
    _, document = await call(
        emu, token, "POST", f"{FEEDS}/documents", {"contentType": "text/xml; charset=UTF-8"}
    )
    async with emu.client.session.put(
        yarl.URL(document["url"], encoded=True),
        data=b"<x/>",
        headers={"content-type": "text/plain"},
    ) as uploaded:
        assert uploaded.status == 403
        assert "SignatureDoesNotMatch" in await uploaded.text()
    status, refused = await call(
        emu, token, "POST", f"{FEEDS}/feeds",
        {"feedType": "POST_PRODUCT_DATA", "marketplaceIds": [MARKETPLACE],
         "inputFeedDocumentId": document["feedDocumentId"]},
    )  # fmt: skip
    assert status == 400
    assert "uploaded" in refused["errors"][0]["details"]


STATIC_MODEL = {
    "swagger": "2.0",
    "paths": {
        "/reports/2021-06-30/reports": {
            "post": {
                "operationId": "createReport",
                "parameters": [{"name": "body", "in": "body"}],
                "responses": {
                    "202": {
                        "x-amzn-api-sandbox": {
                            "static": [
                                {
                                    "request": {
                                        "parameters": {
                                            "body": {"value": {"reportType": "STATIC_CASE"}}
                                        }
                                    },
                                    "response": {"reportId": "ID323"},
                                }
                            ]
                        }
                    }
                },
            }
        }
    },
}


async def test_a_static_case_still_wins_when_its_matcher_matches(
    make_emu: MakeEmu, tmp_path: Path
) -> None:
    (tmp_path / "reports.json").write_text(json.dumps(STATIC_MODEL))
    emu = await make_emu(models_dir=str(tmp_path))
    token = await emu.token()
    status, static = await call(
        emu, token, "POST", f"{REPORTS}/reports", {"reportType": "STATIC_CASE"}
    )
    assert (status, static) == (202, {"reportId": "ID323"})
    status, live = await call(
        emu, token, "POST", f"{REPORTS}/reports",
        {"reportType": ORDERS_REPORT, "marketplaceIds": [MARKETPLACE]},
    )  # fmt: skip
    assert status == 202
    assert live["reportId"] != "ID323"


async def test_get_reports_and_get_feeds_list_what_was_created_filtered_and_paged(
    make_emu: MakeEmu,
) -> None:
    emu = await make_emu(queued_s=10.0, in_progress_s=10.0)
    token = await emu.token()
    ids = []
    for report_type in (ORDERS_REPORT, ORDERS_REPORT, "GET_MERCHANT_LISTINGS_ALL_DATA"):
        _, created = await call(
            emu, token, "POST", f"{REPORTS}/reports",
            {"reportType": report_type, "marketplaceIds": [MARKETPLACE]},
        )  # fmt: skip
        ids.append(created["reportId"])
        emu.clock.advance(1)

    status, page = await call(
        emu, token, "GET", f"{REPORTS}/reports?reportTypes={ORDERS_REPORT}&pageSize=1"
    )
    assert status == 200
    assert [r["reportId"] for r in page["reports"]] == [ids[1]]  # newest first
    status, rest = await call(emu, token, "GET", f"{REPORTS}/reports?nextToken={page['nextToken']}")
    assert [r["reportId"] for r in rest["reports"]] == [ids[0]]
    assert "nextToken" not in rest

    queued = f"{REPORTS}/reports?reportTypes={ORDERS_REPORT},GET_MERCHANT_LISTINGS_ALL_DATA"
    _, listed = await call(emu, token, "GET", queued + "&processingStatuses=IN_QUEUE")
    assert [r["reportId"] for r in listed["reports"]] == ids[::-1]
    _, done = await call(emu, token, "GET", queued + "&processingStatuses=DONE")
    assert done["reports"] == []

    status, refused = await call(emu, token, "GET", f"{REPORTS}/reports?nextToken=IkEi")
    assert status == 400
    status, refused = await call(emu, token, "GET", f"{REPORTS}/reports")
    assert status == 400
    assert "reportTypes" in refused["errors"][0]["details"]

    status, feeds = await call(emu, token, "GET", f"{FEEDS}/feeds?feedTypes=POST_PRODUCT_DATA")
    assert (status, feeds) == (200, {"feeds": []})


async def test_a_feed_of_several_megabytes_uploads(make_emu: MakeEmu) -> None:
    emu = await make_emu(queued_s=0.0, in_progress_s=0.0)
    rows = "".join(f"SKU-{n}\t9.99\t1\n" for n in range(200_000))  # about 3 MB
    _, report = await run_feed(
        emu, await emu.token(), "POST_FLAT_FILE_INVLOADER_DATA",
        "text/tab-separated-values; charset=UTF-8", ("sku\tprice\tquantity\n" + rows).encode(),
    )  # fmt: skip
    assert "Number of records processed\t\t200000" in report.decode()
