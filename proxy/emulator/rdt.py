"""The Tokens API's ``createRestrictedDataToken``: issues RDTs the sandbox then accepts."""

from __future__ import annotations

import json
from typing import Any

from proxy.emulator import policy
from proxy.emulator.catalog import Catalog
from proxy.emulator.state import EmulatorState
from proxy.emulator.tokens import RestrictedResource, TokenKind

MAX_RESOURCES = 50
_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH"})
# The message Amazon gives when a resource is not one an RDT can cover.
NO_ACCESS = "Application do not have access to some or all requested resource"


class RdtRequestError(Exception):
    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def create_restricted_data_token(body: bytes, state: EmulatorState) -> tuple[int, Any]:
    """``(status, JSON body)`` for one createRestrictedDataToken call."""
    try:
        resources = _parse(body, state.catalog)
    except RdtRequestError as error:
        return 400, {
            "errors": [{"code": "InvalidInput", "message": error.message, "details": error.details}]
        }
    lifetime = state.config.token_lifetime_s
    token = state.tokens.issue(TokenKind.RDT, lifetime, resources=resources)
    return 200, {"restrictedDataToken": token, "expiresIn": int(lifetime)}


def _parse(body: bytes, catalog: Catalog) -> tuple[RestrictedResource, ...]:
    try:
        request = json.loads(body)
    except ValueError:
        raise RdtRequestError("Invalid Input", "The request body is not JSON.") from None
    raw = request.get("restrictedResources") if isinstance(request, dict) else None
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_RESOURCES:
        raise RdtRequestError(
            "Invalid Input", f"restrictedResources must list 1 to {MAX_RESOURCES} resources."
        )
    if "targetApplication" in request and not isinstance(request["targetApplication"], str):
        raise RdtRequestError("Invalid Input", "targetApplication must be a string.")
    return tuple(_resource(item, catalog) for item in raw)


def _resource(item: Any, catalog: Catalog) -> RestrictedResource:
    if not isinstance(item, dict):
        raise RdtRequestError("Invalid Input", "Each restricted resource must be an object.")
    method, path = item.get("method"), item.get("path")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise RdtRequestError(NO_ACCESS, f"Unsupported method {method!r}.")
    if not isinstance(path, str) or not path.startswith("/"):
        raise RdtRequestError(NO_ACCESS, "path must start with '/'.")
    resolved = catalog.resolve(method.upper(), path)
    template = resolved.operation.path_template if resolved else ""
    takes_rdt = resolved is not None and policy.accepts_rdt(method, template)
    takes_elements = resolved is not None and policy.accepts_data_elements(method, template)
    if not takes_rdt:
        raise RdtRequestError(NO_ACCESS, f"{method.upper()} {path} is not a restricted operation.")
    elements = item.get("dataElements", [])
    if not isinstance(elements, list) or not set(elements) <= policy.DATA_ELEMENTS:
        raise RdtRequestError(
            "Invalid Input", f"dataElements must be among {sorted(policy.DATA_ELEMENTS)}."
        )
    if elements and not takes_elements:
        raise RdtRequestError(
            "Invalid Input", "dataElements apply only to getOrders, getOrder and getOrderItems."
        )
    return RestrictedResource(method.upper(), path, tuple(elements))
