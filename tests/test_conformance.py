"""Every static case of the official SP-API models, sent through the proxy to the emulator.

The cases are read straight from the model files (not through the emulator's loader, so a case
the loader drops counts as a miss). Each one becomes an HTTP request — path parameters filled
in, arrays in the query comma-separated or repeated per the model's ``collectionFormat``, the
body as JSON — sent through the proxy (which fetches RDTs and grantless tokens itself); the
answer's status and JSON body are compared with the case. Needs the models folder
(``$SPAPI_MODELS_DIR``, see tests/support/models.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestServer

from proxy.config.settings import Settings
from proxy.emulator import EmulatorConfig
from tests.conftest import settings_for
from tests.support.clock import FakeClock
from tests.support.models import MODELS, requires_models

pytestmark = requires_models

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
SEPARATORS = {"csv": ",", "ssv": " ", "tsv": "\t", "pipes": "|"}
TARGET = 0.95


class Listening(Protocol):
    @property
    def port(self) -> int | None: ...


@dataclass(frozen=True)
class ModelCase:
    """One static case as the model file states it."""

    source: str
    operation_id: str
    method: str
    path_template: str
    parameters: Mapping[str, Mapping[str, Any]]  # model name -> the Swagger parameter object
    values: Mapping[str, Any]  # parameter name -> the value the case requires
    status: int
    body: Any

    @property
    def label(self) -> str:
        return f"{self.source}:{self.operation_id}:{self.status}"


# --- reading the models -------------------------------------------------------------------


def model_cases(root: Path) -> Iterator[ModelCase]:
    for path in sorted(root.rglob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for template, item in document.get("paths", {}).items():
            for method in HTTP_METHODS:
                operation = item.get(method)
                if isinstance(operation, dict):
                    yield from operation_cases(document, path.name, method, template, item)


def operation_cases(
    document: Mapping[str, Any], source: str, method: str, template: str, item: Mapping[str, Any]
) -> Iterator[ModelCase]:
    operation = item[method]
    listed = [*item.get("parameters", []), *operation.get("parameters", [])]
    parameters = {p["name"]: p for p in (deref(document, p) for p in listed) if "name" in p}
    for status, response in operation.get("responses", {}).items():
        sandbox = response.get("x-amzn-api-sandbox") if isinstance(response, dict) else None
        for case in (sandbox or {}).get("static", []):
            values = (case.get("request") or {}).get("parameters") or {}
            yield ModelCase(
                source=source,
                operation_id=operation.get("operationId", f"{method} {template}"),
                method=method.upper(),
                path_template=template,
                parameters=parameters,
                values={name: unwrap(value) for name, value in values.items()},
                status=int(status),
                body=case.get("response"),
            )


def deref(document: Mapping[str, Any], parameter: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = parameter.get("$ref")
    if not isinstance(ref, str):
        return parameter
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return dict(target)


def unwrap(value: Any) -> Any:
    # Most values are {"value": x}; some model files give x bare (docs/sp-api-facts.md §9).
    if isinstance(value, dict) and set(value) == {"value"}:
        return value["value"]
    return value


# --- building the request -----------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # raw path + query, already percent-encoded
    headers: Mapping[str, str]
    body: bytes | None


def build_request(case: ModelCase) -> HttpRequest:
    path, query, headers, body = case.path_template, [], {}, None
    for name, value in case.values.items():
        # Some cases put the body under "body" although the parameter has another name.
        where = case.parameters.get(name, {}).get("in", "body" if name == "body" else "query")
        if where == "path":
            path = path.replace("{" + name + "}", quote(text_of(value), safe=""))
        elif where == "query":
            query.extend(query_pairs(name, value, case.parameters.get(name, {})))
        elif where == "header":
            headers[name] = text_of(value)
        elif not (case.method in ("GET", "DELETE") and value in ({}, None)):
            body = json.dumps(value).encode()
            headers["Content-Type"] = "application/json"
    # A path parameter the case does not constrain matches anything: fill it in.
    path = re.sub(r"\{[^/{}]+\}", "ANY", path)
    target = path + ("?" + "&".join(query) if query else "")
    return HttpRequest(case.method, target, headers, body)


def query_pairs(name: str, value: Any, parameter: Mapping[str, Any]) -> list[str]:
    key = quote(name, safe="")
    if not isinstance(value, list):
        return [f"{key}={quote(text_of(value), safe='')}"]
    collection = parameter.get("collectionFormat", "csv")
    if collection == "multi":
        return [f"{key}={quote(text_of(item), safe='')}" for item in value]
    joined = SEPARATORS.get(collection, ",").join(text_of(item) for item in value)
    return [f"{key}={quote(joined, safe='')}"]


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


# --- comparing the answer -----------------------------------------------------------------


def miss_reason(
    case: ModelCase, status: int, headers: Mapping[str, str], raw: bytes, shadowed: bool
) -> str | None:
    """None when the answer is the case's; else why not, worded to group alike misses."""
    proxy_error = headers.get("x-spapi-proxy-error")
    if proxy_error:
        return f"the proxy answered {status} {proxy_error}"
    got = parse_json(raw)
    if status == case.status and (got == case.body or (not raw and case.body in EMPTY_BODIES)):
        return None
    if shadowed:
        return "unreachable: an earlier case of the operation has the same matcher"
    if (case.method, case.path_template) in LIVE_HANDLERS:
        return LIVE_HANDLERS[case.method, case.path_template]
    if any(case.values.get(name) == "" for name in path_parameters(case)):
        return "the case needs an empty path segment, which no path template matches"
    if status == case.status:
        return f"status {status} as expected, body differs"
    return f"got {status} {error_code(got)} instead of {case.status}"


# A case's "no body" (a 204 carries none on the wire).
EMPTY_BODIES: tuple[object, ...] = (None, {}, "")
LIVE_HANDLERS = {
    ("POST", "/tokens/2021-03-01/restrictedDataToken"): (
        "answered by the emulator's live RDT handler (a real token, not the static one)"
    ),
}


def path_parameters(case: ModelCase) -> list[str]:
    return [n for n, p in case.parameters.items() if p.get("in") == "path"]


def shadowed_cases(cases: list[ModelCase]) -> set[int]:
    """Indexes of cases whose matcher an earlier case of the same operation already has."""
    seen: set[tuple[str, str, str, str]] = set()
    shadowed = set()
    for index, case in enumerate(cases):
        key = (
            case.source,
            case.method,
            case.path_template,
            json.dumps(case.values, sort_keys=True),
        )
        if key in seen:
            shadowed.add(index)
        seen.add(key)
    return shadowed


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def error_code(document: Any) -> str:
    try:
        return str(document["errors"][0]["code"])
    except (KeyError, IndexError, TypeError):
        return "(no SP-API error body)"


# --- the test -----------------------------------------------------------------------------


@pytest.fixture
def emulator_config(clock: FakeClock) -> EmulatorConfig:
    """The emulator with the official models, its throttle out of the way."""
    return EmulatorConfig(clock=clock, models_dir=str(MODELS), rate_per_s=1e9, burst=10**9)


async def test_every_static_case_answers_as_written_through_the_proxy(
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    start_proxy: Callable[[Settings], Awaitable[Listening]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = await start_proxy(settings_for(emulator, emulator_config))
    base = f"http://127.0.0.1:{proxy.port}"
    cases = list(model_cases(MODELS))
    shadowed = shadowed_cases(cases)
    misses: dict[str, list[str]] = defaultdict(list)
    async with aiohttp.ClientSession() as session:
        for index, case in enumerate(cases):
            request = build_request(case)
            async with session.request(
                request.method,
                yarl.URL(base + request.target, encoded=True),
                headers=request.headers,
                data=request.body,
            ) as response:
                raw = await response.read()
                reason = miss_reason(
                    case, response.status, response.headers, raw, index in shadowed
                )
            if reason is not None:
                misses[reason].append(case.label)

    report, rate = summary(cases, misses)
    with capsys.disabled():
        print("\n" + report)
    assert cases, f"no static cases found below {MODELS}"
    assert rate >= TARGET, report


def summary(cases: list[ModelCase], misses: Mapping[str, list[str]]) -> tuple[str, float]:
    total = len(cases)
    operations = len({(c.source, c.method, c.path_template) for c in cases})
    missed = sum(len(labels) for labels in misses.values())
    matched = total - missed
    rate = matched / total if total else 0.0
    lines = [
        f"conformance through the proxy: {matched}/{total} = {rate:.1%} static cases matched "
        f"({operations} operations; target {TARGET:.0%}); restricted operations went with an "
        "RDT and grantless ones with a grantless token, both fetched by the proxy",
    ]
    for reason, labels in sorted(misses.items(), key=lambda item: -len(item[1])):
        by_operation = Counter(label.rsplit(":", 1)[0] for label in labels)
        shown = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in by_operation.items())
        lines.append(f"  {len(labels):4d}  {reason}: {shown}")
    return "\n".join(lines), rate
