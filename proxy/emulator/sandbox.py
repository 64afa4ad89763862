"""The SP-API side: front-door checks, auth, routing, throttling and static case answers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import parse_qsl

from aiohttp import web

from proxy.emulator.auth import AuthResult, Denial, authenticate, authorize
from proxy.emulator.catalog import Operation, RequestView, find_case, is_catch_all
from proxy.emulator.rdt import create_restricted_data_token
from proxy.emulator.responses import (
    HINT,
    RATE_LIMIT,
    front_door_400,
    json_response,
    new_request_id,
    sp_error,
)
from proxy.emulator.state import EmulatorState, ReceivedRequest
from proxy.emulator.workflows import Call, unknown_id

logger = logging.getLogger(__name__)

_NO_BODY_METHODS = frozenset({"GET", "HEAD"})


async def handle_sp_api(request: web.Request, body: bytes, state: EmulatorState) -> web.Response:
    """Answer one SP-API call and remember it in ``state.received``."""
    headers = tuple(request.headers.items())
    raw_target = request.raw_path
    request_id = new_request_id()
    # Document URLs are built on the address the client reached the emulator at.
    origin = f"{request.scheme}://{request.host}"
    response, auth, op = _answer(
        request.method, raw_target, headers, body, state, request_id, origin
    )
    if op is None:  # refused before routing: still name the operation in the recorded call
        resolved = state.catalog.resolve(request.method, raw_target.partition("?")[0])
        op = resolved.operation if resolved else None
    token = auth.token if auth else None
    state.received.append(
        ReceivedRequest(
            request.method,
            raw_target,
            headers,
            body,
            auth.signature_ok if auth else None,
            response.status,
            operation=op.operation_id if op else None,
            token_kind=token.kind.value if token else None,
        )
    )
    logger.info(
        "%s %s -> %d (%s)",
        request.method,
        raw_target.partition("?")[0],
        response.status,
        op.operation_id if op else "no operation",
    )
    return response


def _answer(
    method: str,
    raw_target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    state: EmulatorState,
    request_id: str,
    origin: str,
) -> tuple[web.Response, AuthResult | None, Operation | None]:
    refused = _front_door(method, headers, body)
    if refused:
        return front_door_400(request_id, refused), None, None
    auth = authenticate(method, raw_target, headers, body, state)
    if auth.denial or auth.token is None:
        return _deny(auth.denial, request_id), auth, None
    raw_path = raw_target.partition("?")[0]
    resolved = state.catalog.resolve(method, raw_path)
    if resolved is None:
        return _not_found(method, raw_path, state, request_id), auth, None
    op = resolved.operation
    rate = {RATE_LIMIT: state.throttle.limit_header(op.method, op.path_template)}
    denial = authorize(auth.token, op, raw_path)
    if denial:
        return _deny(denial, request_id, rate), auth, op
    if not state.throttle.allow(op.method, op.path_template):
        # Amazon never sends x-amzn-RateLimit-Limit on a 429 (docs/sp-api-facts.md §7).
        quota = sp_error(
            429, "QuotaExceeded", "You exceeded your quota for the requested resource.", request_id
        )
        return quota, auth, op
    if op.dynamic:
        status, payload = create_restricted_data_token(body, state)
        return json_response(status, payload, request_id, rate), auth, op
    view = RequestView(resolved.path_params, _query(raw_target), headers, body)
    case = find_case(op, view)
    # A matching static case wins, as in Amazon's sandbox; a live report or feed is answered
    # before a case that lists no parameter, which would otherwise match every id.
    workflow = state.workflows.handler(op.method, op.path_template)
    if workflow is not None and (case is None or is_catch_all(case)):
        param = next(iter(resolved.path_params.values()), "")
        call = Call(param, view.json_body, auth.token, origin, view.query)
        reply = workflow(state.workflows, call)
        if reply is None and case is None:
            reply = unknown_id(op.operation_id, call.path_param)
        if reply is not None:
            extra = {**rate, HINT: reply.hint} if reply.hint else rate
            return json_response(reply.status, reply.body, request_id, extra), auth, op
    if case is None:
        no_match = sp_error(
            400, "InvalidInput", "Could not match input arguments", request_id, headers=rate
        )
        return no_match, auth, op
    answer = json_response(case.status, case.response_body, request_id, {**rate, **case.headers})
    return answer, auth, op


def _front_door(method: str, headers: Sequence[tuple[str, str]], body: bytes) -> str | None:
    """Why Amazon's edge would refuse this before SP-API sees it (docs/sp-api-facts.md §8)."""
    names = [k.lower() for k, _ in headers]
    if names.count("host") > 1:
        return "the request carries more than one Host header"
    if method in _NO_BODY_METHODS and (
        body or "content-length" in names or "transfer-encoding" in names
    ):
        return (
            f"a {method} must carry no body, no Content-Length and no Transfer-Encoding "
            "(Amazon answers this with an HTML 400)"
        )
    return None


def _query(raw_target: str) -> list[tuple[str, str]]:
    # SP-API reads '+' as a space (docs/sp-api-facts.md §10), which is what form decoding does.
    return parse_qsl(raw_target.partition("?")[2], keep_blank_values=True)


def _deny(
    denial: Denial | None, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    if denial is None:  # authenticate() always explains a missing token; this is a guard
        denial = Denial(403, "Unauthorized", "Access to requested resource is denied.", "")
    return sp_error(
        denial.status,
        denial.code,
        denial.message,
        request_id,
        details=denial.details,
        error_type=denial.error_type,
        hint=denial.hint,
        headers=headers,
    )


def _not_found(method: str, raw_path: str, state: EmulatorState, request_id: str) -> web.Response:
    allowed = state.catalog.methods_for(raw_path)
    if allowed:
        details = f"{raw_path} answers {', '.join(allowed)}, not {method}."
    else:
        details = (
            f"The emulator has no operation for {method} {raw_path} "
            f"({len(state.catalog)} operations loaded; add the official models with --models)."
        )
    return sp_error(404, "NotFound", "Resource not found.", request_id, details=details)
