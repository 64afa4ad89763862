"""Stateful Reports and Feeds: reports and feeds that move from IN_QUEUE to DONE on the
emulator's clock, and the documents behind them, served by the emulator itself.

A report: createReport -> getReport until DONE -> getReportDocument -> GET the document URL.
A feed: createFeedDocument -> PUT the content to the URL -> createFeed -> getFeed until DONE ->
getFeedDocument(resultFeedDocumentId) -> GET the processing report.

Document URLs point at ``/_emulator/documents/{id}`` on the emulator, as Amazon's point at S3:
the client fetches them directly, not through SP-API (or the proxy).
"""

from __future__ import annotations

import base64
import enum
import gzip
import json
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proxy.emulator import documents, policy
from proxy.emulator.config import EmulatorConfig
from proxy.emulator.tokens import IssuedToken, TokenKind

DOCUMENTS_PREFIX = "/_emulator/documents/"
# Enough for any test run; past it the oldest report, feed or document is forgotten first.
MAX_ENTRIES = 10_000
REPORTS = "/reports/2021-06-30"
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 10, 100
FEEDS = "/feeds/2021-06-30"


class Status(enum.Enum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Reply:
    """An SP-API answer: status, JSON body (None: no body) and an optional emulator hint."""

    status: int
    body: Any
    hint: str | None = None


@dataclass
class Job:
    """A report or a feed: what was asked, when, and the document it ends with."""

    job_id: str
    job_type: str
    marketplace_ids: list[str]
    created: float
    document_id: str
    details: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False


@dataclass
class Document:
    document_id: str
    content_type: str
    content: bytes | None = None  # None: a feed document still waiting for its upload
    compressed: bool = False
    report_type: str | None = None


@dataclass(frozen=True)
class Call:
    """What a workflow handler is given: the request's one path parameter (or ""), its JSON
    body, the token it came with, the origin document URLs are built on, and its query."""

    path_param: str
    body: Any
    token: IssuedToken
    origin: str
    query: Sequence[tuple[str, str]] = ()

    def listed(self, name: str) -> list[str]:
        """A query array, sent as repeated keys or comma-separated (both reach SP-API)."""
        return [part for key, value in self.query if key == name for part in value.split(",")]


Handler = Callable[["Workflows", Call], Reply | None]


def _bounded_put(entries: dict[str, Any], key: str, value: Any) -> None:
    entries[key] = value
    if len(entries) > MAX_ENTRIES:
        del entries[next(iter(entries))]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def invalid(details: str) -> Reply:
    return Reply(
        400, {"errors": [{"code": "InvalidInput", "message": "Invalid input", "details": details}]}
    )


class Workflows:
    """The reports, feeds and documents of one emulator."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self.reports: dict[str, Job] = {}
        self.feeds: dict[str, Job] = {}
        self.documents: dict[str, Document] = {}

    def handler(self, method: str, path_template: str) -> Handler | None:
        return HANDLERS.get(policy.template_key(method, path_template))

    # --- lifecycle ---------------------------------------------------------------------------

    def status(self, job: Job) -> Status:
        if job.cancelled:
            return Status.CANCELLED
        elapsed = self._config.clock() - job.created
        if elapsed < self._config.queued_s:
            return Status.IN_QUEUE
        if elapsed < self._config.queued_s + self._config.in_progress_s:
            return Status.IN_PROGRESS
        return Status.DONE

    def _describe(self, job: Job, id_key: str, type_key: str, document_key: str) -> dict[str, Any]:
        status = self.status(job)
        started = job.created + self._config.queued_s
        described: dict[str, Any] = {
            id_key: job.job_id,
            type_key: job.job_type,
            "marketplaceIds": job.marketplace_ids,
            **job.details,
            "createdTime": _iso(job.created),
            "processingStatus": status.value,
        }
        if status in (Status.IN_PROGRESS, Status.DONE):
            described["processingStartTime"] = _iso(started)
        if status is Status.DONE:
            described["processingEndTime"] = _iso(started + self._config.in_progress_s)
            described[document_key] = job.document_id
        return described

    def _new_job(
        self, jobs: dict[str, Job], job_type: str, body: Mapping[str, Any], document_id: str
    ) -> Job:
        job_id = str(50_000_000_000 + secrets.randbelow(10_000_000_000))
        details = {k: body[k] for k in ("dataStartTime", "dataEndTime") if k in body}
        job = Job(
            job_id,
            job_type,
            list(body["marketplaceIds"]),
            self._config.clock(),
            document_id,
            details,
        )
        _bounded_put(jobs, job_id, job)
        return job

    def _store(self, document: Document) -> None:
        _bounded_put(self.documents, document.document_id, document)

    def _document_reply(self, document: Document, id_key: str, origin: str) -> Reply:
        answer = {
            id_key: document.document_id,
            "url": origin + DOCUMENTS_PREFIX + document.document_id,
        }
        if document.compressed:
            answer["compressionAlgorithm"] = "GZIP"
        return Reply(200, answer)

    # --- Reports -----------------------------------------------------------------------------

    def create_report(self, call: Call) -> Reply | None:
        refused = _job_request_problem(call.body, "reportType")
        if refused:
            return invalid(refused)
        report_type = call.body["reportType"]
        content, content_type = documents.report_content(report_type)
        document = Document(str(uuid.uuid4()), content_type, content, report_type=report_type)
        if self._config.gzip_reports:
            document.content, document.compressed = gzip.compress(content), True
        self._store(document)
        job = self._new_job(self.reports, report_type, call.body, document.document_id)
        return Reply(202, {"reportId": job.job_id})

    def get_report(self, call: Call) -> Reply | None:
        job = self.reports.get(call.path_param)
        if job is None:
            return None
        return Reply(200, self._describe(job, "reportId", "reportType", "reportDocumentId"))

    def get_reports(self, call: Call) -> Reply | None:
        return self._list(
            call,
            self.reports,
            "reports",
            "reportTypes",
            "reportId",
            "reportType",
            "reportDocumentId",
        )

    def cancel_report(self, call: Call) -> Reply | None:
        return self._cancel(self.reports.get(call.path_param), "report")

    def get_report_document(self, call: Call) -> Reply | None:
        document = self.documents.get(call.path_param)
        if document is None or document.report_type is None:
            return None
        restricted = document.report_type in documents.RESTRICTED_REPORT_TYPES
        if restricted and call.token.kind is not TokenKind.RDT:
            # Amazon's answer to an LWA token on a restricted document (docs/sp-api-facts.md §6)
            denied = {
                "code": "Unauthorized",
                "message": "Access to requested resource is denied.",
                "details": "",
            }
            hint = (
                f"{document.report_type} is a restricted report type: get its document with a "
                "restricted data token covering GET "
                f"{REPORTS}/documents/{document.document_id}"
            )
            return Reply(403, {"errors": [denied]}, hint)
        return self._document_reply(document, "reportDocumentId", call.origin)

    # --- Feeds -------------------------------------------------------------------------------

    def create_feed_document(self, call: Call) -> Reply | None:
        content_type = call.body.get("contentType") if isinstance(call.body, dict) else None
        if not isinstance(content_type, str) or not content_type:
            return invalid("contentType is required, e.g. text/xml; charset=UTF-8.")
        document = Document(str(uuid.uuid4()), content_type)
        self._store(document)
        answer = self._document_reply(document, "feedDocumentId", call.origin).body
        return Reply(201, answer)

    def get_feed_document(self, call: Call) -> Reply | None:
        document = self.documents.get(call.path_param)
        if document is None or document.report_type is not None:
            return None
        return self._document_reply(document, "feedDocumentId", call.origin)

    def create_feed(self, call: Call) -> Reply | None:
        refused = _job_request_problem(call.body, "feedType")
        if refused:
            return invalid(refused)
        input_id = call.body.get("inputFeedDocumentId")
        uploaded = self.documents.get(input_id) if isinstance(input_id, str) else None
        if uploaded is None or uploaded.report_type is not None:
            return invalid(f"inputFeedDocumentId {input_id!r} is not a feed document.")
        if uploaded.content is None:
            return invalid(f"feed document {input_id} has no content: nothing was uploaded to it.")
        result = Document(str(uuid.uuid4()), "")
        job = self._new_job(self.feeds, call.body["feedType"], call.body, result.document_id)
        result.content, result.content_type = documents.processing_report(
            job.job_id, uploaded.content
        )
        self._store(result)
        return Reply(202, {"feedId": job.job_id})

    def get_feed(self, call: Call) -> Reply | None:
        job = self.feeds.get(call.path_param)
        if job is None:
            return None
        return Reply(200, self._describe(job, "feedId", "feedType", "resultFeedDocumentId"))

    def get_feeds(self, call: Call) -> Reply | None:
        return self._list(
            call, self.feeds, "feeds", "feedTypes", "feedId", "feedType", "resultFeedDocumentId"
        )

    def cancel_feed(self, call: Call) -> Reply | None:
        return self._cancel(self.feeds.get(call.path_param), "feed")

    def _list(
        self,
        call: Call,
        jobs: dict[str, Job],
        key: str,
        types_key: str,
        id_key: str,
        type_key: str,
        document_key: str,
    ) -> Reply:
        """getReports / getFeeds: newest first, filtered by type and status, paged with an
        opaque nextToken that carries the filters (SP-API wants nothing else beside it)."""
        next_token = dict(call.query).get("nextToken")
        if next_token:
            try:
                types, statuses, offset, size = json.loads(base64.urlsafe_b64decode(next_token))
            except (ValueError, TypeError):  # not base64, not JSON, or not our four fields
                return invalid("nextToken is not one this emulator gave.")
        else:
            types, statuses, offset = call.listed(types_key), call.listed("processingStatuses"), 0
            if not types:
                return invalid(f"{types_key} is required when nextToken is not given.")
            size_text = dict(call.query).get("pageSize", str(DEFAULT_PAGE_SIZE))
            size = int(size_text) if size_text.isdigit() else 0
            if not 1 <= size <= MAX_PAGE_SIZE:
                return invalid(f"pageSize must be 1 to {MAX_PAGE_SIZE}.")
        matching = [
            job
            for job in reversed(jobs.values())
            if job.job_type in types and (not statuses or self.status(job).value in statuses)
        ]
        page = matching[offset : offset + size]
        answer: dict[str, Any] = {
            key: [self._describe(job, id_key, type_key, document_key) for job in page]
        }
        if offset + size < len(matching):
            state = json.dumps([types, statuses, offset + size, size]).encode()
            answer["nextToken"] = base64.urlsafe_b64encode(state).decode()
        return Reply(200, answer)

    def _cancel(self, job: Job | None, what: str) -> Reply | None:
        if job is None:
            return None
        if self.status(job) is not Status.IN_QUEUE:
            return invalid(f"Only a {what} that is IN_QUEUE can be cancelled.")
        job.cancelled = True
        return Reply(200, None)

    # --- the document URLs ---------------------------------------------------------------------

    def serve_document(
        self, method: str, document_id: str, content_type: str, body: bytes
    ) -> tuple[int, bytes, str]:
        """``(status, body, content type)`` for a GET or PUT on a document URL, S3-like."""
        document = self.documents.get(document_id)
        if document is None:
            return (
                404,
                _s3_error("NoSuchKey", "The specified key does not exist."),
                "application/xml",
            )
        if method == "PUT" and document.content is None:
            # The URL is signed for the declared content type, as S3's presigned PUT is.
            if content_type != document.content_type:
                message = (
                    f"The request signature we calculated does not match the signature you "
                    f"provided: upload with Content-Type {document.content_type!r}, the one "
                    "given to createFeedDocument."
                )
                return 403, _s3_error("SignatureDoesNotMatch", message), "application/xml"
            document.content = body
            return 200, b"", ""
        if method == "GET" and document.content is not None:
            return 200, document.content, document.content_type
        return 403, _s3_error("AccessDenied", "Access Denied"), "application/xml"


def _job_request_problem(body: Any, type_key: str) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get(type_key), str) or not body[type_key]:
        return f"{type_key} is required."
    marketplaces = body.get("marketplaceIds")
    if (
        not isinstance(marketplaces, list)
        or not marketplaces
        or not all(isinstance(m, str) for m in marketplaces)
    ):
        return "marketplaceIds must list at least one marketplace id."
    return None


def _s3_error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


def unknown_id(operation_id: str, identifier: str) -> Reply:
    details = f"{operation_id}: {identifier} is unknown to this emulator."
    return Reply(
        404,
        {"errors": [{"code": "NotFound", "message": "Resource not found.", "details": details}]},
    )


HANDLERS: dict[tuple[str, str], Handler] = {
    ("POST", f"{REPORTS}/reports"): Workflows.create_report,
    ("GET", f"{REPORTS}/reports"): Workflows.get_reports,
    ("GET", f"{REPORTS}/reports/{{}}"): Workflows.get_report,
    ("DELETE", f"{REPORTS}/reports/{{}}"): Workflows.cancel_report,
    ("GET", f"{REPORTS}/documents/{{}}"): Workflows.get_report_document,
    ("POST", f"{FEEDS}/documents"): Workflows.create_feed_document,
    ("GET", f"{FEEDS}/documents/{{}}"): Workflows.get_feed_document,
    ("POST", f"{FEEDS}/feeds"): Workflows.create_feed,
    ("GET", f"{FEEDS}/feeds"): Workflows.get_feeds,
    ("GET", f"{FEEDS}/feeds/{{}}"): Workflows.get_feed,
    ("DELETE", f"{FEEDS}/feeds/{{}}"): Workflows.cancel_feed,
}
