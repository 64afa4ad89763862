"""The emulator's aiohttp application: one port for LWA, STS and the SP-API sandbox.

Routing on the one port: ``/auth/o2/token`` is LWA; a form-encoded POST to ``/`` with an
``Action`` is STS; everything else is SP-API.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from proxy.emulator.catalog import Catalog, Operation, builtin_operations, load_document
from proxy.emulator.config import EmulatorConfig
from proxy.emulator.lwa import LWA_PATH, handle_token
from proxy.emulator.sandbox import handle_sp_api
from proxy.emulator.state import EmulatorState, ReceivedRequest
from proxy.emulator.sts import handle_sts, is_sts_request
from proxy.emulator.workflows import DOCUMENTS_PREFIX

logger = logging.getLogger(__name__)

# The emulator's own endpoints live under /_emulator/, a prefix no SP-API path uses.
CALLS_PATH = "/_emulator/calls"
MAX_UPLOAD_BYTES = 64 * 1024 * 1024

EMULATOR_STATE: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)

__all__ = [
    "EMULATOR_STATE",
    "EmulatorConfig",
    "EmulatorState",
    "ReceivedRequest",
    "create_emulator_app",
    "run_emulator",
]


def create_emulator_app(config: EmulatorConfig = EmulatorConfig()) -> web.Application:  # noqa: B008  (frozen, so a shared default is safe)
    # Feed documents arrive whole in one PUT, as to S3; aiohttp's 1 MiB default would refuse
    # an ordinary inventory or listings feed.
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    app[EMULATOR_STATE] = EmulatorState(config, build_catalog(config.models_dir))
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def build_catalog(models_dir: str | None) -> Catalog:
    """Built-in handlers first, then the official models (when given), then our catalog.

    The models take precedence over our static cases so that their own cases answer as
    written; the RDT handler stays ours because static RDTs could not be accepted later.
    """
    builtin = builtin_operations()
    models = load_models(models_dir) if models_dir else []
    return Catalog([*(op for op in builtin if op.dynamic), *models, *builtin])


def load_models(models_dir: str) -> list[Operation]:
    """Every ``*.json`` model below ``models_dir``."""
    root = Path(models_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"models directory not found: {models_dir}")
    operations: list[Operation] = []
    for path in sorted(root.rglob("*.json")):
        operations.extend(load_document(path))
    logger.info(
        "Loaded %d operations with %d static cases from %s",
        len(operations),
        sum(len(op.cases) for op in operations),
        models_dir,
    )
    return operations


async def _dispatch(request: web.Request) -> web.StreamResponse:
    # Read the raw body once; every check below works from these exact bytes.
    body = await request.read()
    state = request.app[EMULATOR_STATE]
    if request.path == LWA_PATH:
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        return await handle_token(request, body, state)
    if is_sts_request(request.method, request.path, request.content_type, body):
        return await handle_sts(request, body, state)
    if request.path == CALLS_PATH:
        return recorded_calls(request.method, state)
    if request.path.startswith(DOCUMENTS_PREFIX):
        return serve_document(request, body, state)
    return await handle_sp_api(request, body, state)


def recorded_calls(method: str, state: EmulatorState) -> web.Response:
    """``GET`` lists the SP-API calls received (oldest first), ``DELETE`` forgets them."""
    if method == "GET":
        return web.json_response([call.as_call() for call in state.received])
    if method == "DELETE":
        state.received.clear()
        return web.Response(status=204)
    raise web.HTTPMethodNotAllowed(method, ["GET", "DELETE"])


def serve_document(request: web.Request, body: bytes, state: EmulatorState) -> web.Response:
    """A report or feed document URL: GET downloads, PUT uploads a feed's content (S3-like)."""
    if request.method not in ("GET", "PUT"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT"])
    document_id = request.path.removeprefix(DOCUMENTS_PREFIX)
    content_type = request.headers.get("Content-Type", "")
    status, content, served_type = state.workflows.serve_document(
        request.method, document_id, content_type, body
    )
    operation = "downloadDocument" if request.method == "GET" else "uploadDocument"
    state.received.append(
        ReceivedRequest(
            request.method,
            request.raw_path,
            tuple(request.headers.items()),
            body,
            None,
            status,
            operation=operation,
        )
    )
    response = web.Response(status=status, body=content)
    if served_type:
        response.headers["Content-Type"] = served_type
    return response


def run_emulator(
    host: str, port: int, models_dir: str | None = None, config: EmulatorConfig | None = None
) -> int:
    """Serve until interrupted; print the demo credentials it accepts and its URLs."""
    config = config or EmulatorConfig(models_dir=models_dir)
    app = create_emulator_app(config)
    state = app[EMULATOR_STATE]
    print(banner(config, host, port, len(state.catalog), state.catalog.case_count), flush=True)
    web.run_app(app, host=host, port=port, print=None)
    return 0


def banner(config: EmulatorConfig, host: str, port: int, operations: int, cases: int) -> str:
    base = f"http://{host}:{port}"
    return "\n".join(
        [
            f"spapi-proxy emulator (offline LWA + STS + SP-API sandbox) on {base}",
            f"  catalog: {operations} operations, {cases} static cases; "
            f"throttle: {config.throttle}",
            f"  LWA token URL:    {base}{LWA_PATH}",
            f"  STS endpoint:     {base}/",
            f"  SP-API endpoint:  {base}",
            f"  recorded calls:   {base}{CALLS_PATH} (GET lists them, DELETE forgets them)",
            "  demo credentials it accepts (not secrets; for the emulator only):",
            f"    LWA_CLIENT_ID={config.client_id}",
            f"    LWA_CLIENT_SECRET={config.client_secret}",
            f"    LWA_REFRESH_TOKEN={config.refresh_token}",
            f"    AWS_ACCESS_KEY_ID={config.aws_access_key_id}",
            f"    AWS_SECRET_ACCESS_KEY={config.aws_secret_access_key}",
            "  role ARN: any valid one, e.g. arn:aws:iam::123456789012:role/spapi-emulator",
        ]
    )
