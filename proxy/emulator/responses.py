"""Response shapes Amazon uses: SP-API JSON errors, request ids and the front door's HTML 400."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

REQUEST_ID = "x-amzn-RequestId"
RATE_LIMIT = "x-amzn-RateLimit-Limit"
ERROR_TYPE = "x-amzn-ErrorType"
HINT = "x-emulator-hint"
JSON_TYPE = "application/json"

# What Amazon's edge answers before SP-API sees the request (docs/sp-api-facts.md §8).
FRONT_DOOR_400_HTML = (
    "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n"
    "<center><h1>400 Bad Request</h1></center>\r\n</body>\r\n</html>\r\n"
)


def new_request_id() -> str:
    return str(uuid.uuid4())


def json_response(
    status: int, body: Any, request_id: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer with the request id Amazon puts on every response."""
    all_headers = {REQUEST_ID: request_id, **(headers or {})}
    if status == 204 or body is None:
        return web.Response(status=status, headers=all_headers)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=JSON_TYPE,
        headers=all_headers,
    )


def sp_error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    details: str | None = None,
    error_type: str | None = None,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """SP-API's error body ``{"errors":[{"code","message","details"?}]}``."""
    error: dict[str, str] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    extra = dict(headers or {})
    if error_type:
        extra[ERROR_TYPE] = error_type
    if hint:
        extra[HINT] = hint
    return json_response(status, {"errors": [error]}, request_id, extra)


def front_door_400(request_id: str, hint: str) -> web.Response:
    return web.Response(
        status=400,
        text=FRONT_DOOR_400_HTML,
        content_type="text/html",
        headers={REQUEST_ID: request_id, HINT: hint},
    )
