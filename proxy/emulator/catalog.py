"""The sandbox catalog: operations, their static cases, and how a request is matched to one.

The shapes follow the official models' ``x-amzn-api-sandbox`` extension (docs/sp-api-facts.md §9),
so the built-in catalog (``catalog/*.json``, written by us) and the official model files are
read by the same loader (:func:`operations_from_document`) and served by the same matcher.
The JSON data lives in the ``catalog/`` folder next to this module; it is package data, not
a Python package, so ``proxy.emulator.catalog`` always names this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from proxy.emulator import policy

BUILTIN_DIR = Path(__file__).with_name("catalog")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_TEMPLATE_PARAM = re.compile(r"\{([^/{}]*)\}")


@dataclass(frozen=True)
class Case:
    """One static sandbox case: the parameters it requires and the answer it gives."""

    status: int
    params: Mapping[str, Any]
    response_body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """An SP-API operation the emulator serves.

    ``param_locations`` maps a model parameter name to where it travels (path, query, header,
    body, formData); parameters missing from it are looked up path, query, body, header.
    ``dynamic`` marks operations answered by a built-in handler rather than static cases.
    """

    method: str
    path_template: str
    operation_id: str
    grantless: bool = False
    restricted: bool = False
    cases: tuple[Case, ...] = ()
    grantless_scope: str | None = None
    param_locations: Mapping[str, str] = field(default_factory=dict)
    dynamic: bool = False

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        pieces = _TEMPLATE_PARAM.split(self.path_template)
        # split() alternates literal text and parameter names
        regex = "".join(
            re.escape(piece) if i % 2 == 0 else f"(?P<p{i // 2}>[^/]+)"
            for i, piece in enumerate(pieces)
        )
        return re.compile(f"^{regex}$")

    @cached_property
    def path_param_names(self) -> tuple[str, ...]:
        return tuple(_TEMPLATE_PARAM.findall(self.path_template))

    def match_path(self, raw_path: str) -> dict[str, str] | None:
        """Path parameters (percent-decoded) when ``raw_path`` fits the template."""
        found = self._pattern.match(raw_path)
        if found is None:
            return None
        return {name: unquote(found.group(f"p{i}")) for i, name in enumerate(self.path_param_names)}


def make_operation(
    method: str,
    path_template: str,
    operation_id: str,
    cases: Iterable[Case] = (),
    *,
    param_locations: Mapping[str, str] | None = None,
    dynamic: bool = False,
) -> Operation:
    """An Operation whose grantless/restricted flags come from :mod:`proxy.emulator.policy`."""
    scope = policy.grantless_scope(method, path_template)
    return Operation(
        method=method.upper(),
        path_template=path_template,
        operation_id=operation_id,
        grantless=scope is not None,
        restricted=policy.is_restricted(method, path_template),
        cases=tuple(cases),
        grantless_scope=scope,
        param_locations=dict(param_locations or {}),
        dynamic=dynamic,
    )


@dataclass(frozen=True)
class Resolved:
    operation: Operation
    path_params: Mapping[str, str]


class Catalog:
    """Operations by method and path template; the first one listed for a template wins."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        unique: dict[tuple[str, str], Operation] = {}
        for op in operations:
            unique.setdefault(policy.template_key(op.method, op.path_template), op)
        self.operations: tuple[Operation, ...] = tuple(unique.values())

    def __len__(self) -> int:
        return len(self.operations)

    @property
    def case_count(self) -> int:
        return sum(len(op.cases) for op in self.operations)

    def resolve(self, method: str, raw_path: str) -> Resolved | None:
        """The operation for this method and raw path, literal segments beating parameters."""
        best: Resolved | None = None
        for op in self.operations:
            if op.method != method.upper():
                continue
            params = op.match_path(raw_path)
            if params is not None and (
                best is None or len(params) < len(best.operation.path_param_names)
            ):
                best = Resolved(op, params)
        return best

    def methods_for(self, raw_path: str) -> list[str]:
        return sorted({op.method for op in self.operations if op.match_path(raw_path) is not None})


# --- loading the x-amzn-api-sandbox shape -------------------------------------------------


def operations_from_document(doc: Mapping[str, Any]) -> list[Operation]:
    """Operations and static cases from one Swagger 2 document (official model or built-in)."""
    operations = []
    for path_template, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in _HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            params = [_deref(doc, p) for p in [*shared, *op.get("parameters", [])]]
            locations = {p["name"]: p.get("in", "") for p in params if "name" in p}
            operations.append(
                make_operation(
                    method,
                    path_template,
                    op.get("operationId", f"{method} {path_template}"),
                    _cases(op.get("responses", {})),
                    param_locations=locations,
                    # our own marker, used by the built-in catalog only
                    dynamic=bool(op.get("x-emulator-dynamic")),
                )
            )
    return operations


def load_document(path: Path) -> list[Operation]:
    with path.open(encoding="utf-8") as handle:
        return operations_from_document(json.load(handle))


def builtin_operations() -> list[Operation]:
    """The catalog written for this project (``catalog/*.json``), in file-name order."""
    operations: list[Operation] = []
    for path in sorted(BUILTIN_DIR.glob("*.json")):
        operations.extend(load_document(path))
    return operations


def _deref(doc: Mapping[str, Any], param: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = param.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return param
    target: Any = doc
    for part in ref[2:].split("/"):
        target = target.get(part, {}) if isinstance(target, Mapping) else {}
    return target if isinstance(target, Mapping) else {}


def _cases(responses: Mapping[str, Any]) -> list[Case]:
    cases = []
    for status, response in responses.items():
        if not str(status).isdigit() or not isinstance(response, Mapping):
            continue
        sandbox = response.get("x-amzn-api-sandbox")
        static = sandbox.get("static", []) if isinstance(sandbox, Mapping) else []
        for entry in static:
            request = entry.get("request", {}) or {}
            params = request.get("parameters", {}) or {}
            cases.append(
                Case(
                    status=int(status),
                    params={name: _unwrap(value) for name, value in params.items()},
                    response_body=entry.get("response"),
                    headers=dict(entry.get("headers", {}) or {}),
                )
            )
    return cases


def _unwrap(value: Any) -> Any:
    # Most values are {"value": x}; some model files give x bare (docs/sp-api-facts.md §9).
    if isinstance(value, Mapping) and set(value) == {"value"}:
        return value["value"]
    return value


# --- matching a request to a case ----------------------------------------------------------


@dataclass(frozen=True)
class RequestView:
    """The parts of a request that sandbox parameters are compared with (all decoded)."""

    path_params: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    headers: Sequence[tuple[str, str]]
    body: bytes

    @cached_property
    def json_body(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return self.body.decode("utf-8", "replace")


def find_case(op: Operation, view: RequestView) -> Case | None:
    """The most specific case whose every listed parameter equals the request's.

    Most specific = the most non-empty parameters; ties go to the case listed first. Without
    this, a model's catch-all 200 case (empty matcher) listed before its 400 case would make
    that 400 case unreachable.
    """
    best: Case | None = None
    for case in op.cases:
        if (best is None or _specificity(case) > _specificity(best)) and all(
            _param_matches(op, view, name, want) for name, want in case.params.items()
        ):
            best = case
    return best


def is_catch_all(case: Case) -> bool:
    """A case that lists no parameter at all matches every request of its operation."""
    return not case.params


def _specificity(case: Case) -> int:
    # An empty expected value ("body": {}) constrains nothing, so it does not count.
    return sum(1 for want in case.params.values() if want not in ({}, None))


def _param_matches(op: Operation, view: RequestView, name: str, want: Any) -> bool:
    where = op.param_locations.get(name) or _guess_location(view, name)
    if where == "path":
        value = view.path_params.get(name)
        return value is not None and _values_equal(want, [value])
    if where in ("query", "formData"):
        return _values_equal(want, [v for k, v in view.query if k == name])
    if where == "header":
        return _values_equal(want, [v for k, v in view.headers if k.lower() == name.lower()])
    if where == "body":
        if not view.body:
            # Some model cases list "body": {} on a GET: an absent body satisfies an empty one.
            return want in ({}, None)
        return _json_equal(want, view.json_body)
    return False


def _guess_location(view: RequestView, name: str) -> str:
    if name in view.path_params:
        return "path"
    if any(k == name for k, _ in view.query):
        return "query"
    # Some model cases put the body under "body" although the parameter has another name.
    if name == "body":
        return "body"
    if any(k.lower() == name.lower() for k, _ in view.headers):
        return "header"
    return "query"


def _values_equal(want: Any, values: list[str]) -> bool:
    if not values:
        return False
    if isinstance(want, list):
        # Arrays travel as repeated keys or comma-separated values (Swagger csv default).
        got = [part for value in values for part in value.split(",")]
        return len(got) == len(want) and all(
            _scalar_equal(w, g) for w, g in zip(want, got, strict=True)
        )
    return _scalar_equal(want, ",".join(values))


def _scalar_equal(want: Any, got: str) -> bool:
    if isinstance(want, bool):
        return got.lower() == ("true" if want else "false")
    if isinstance(want, int | float):
        try:
            return float(got) == float(want)
        except ValueError:
            return False
    if isinstance(want, str):
        return got == want
    try:
        return bool(json.loads(got) == want)
    except ValueError:
        return False


def _json_equal(want: Any, got: Any) -> bool:
    return bool(want == got)
