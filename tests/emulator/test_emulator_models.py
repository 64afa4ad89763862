"""Every static case in the official models, sent straight to the emulator, answers as written.

Needs the models folder (``$SPAPI_MODELS_DIR``, see tests/support/models.py). The proxy-level
conformance test lives with the proxy's tests.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import quote

import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.emulator import EMULATOR_STATE, EmulatorConfig, create_emulator_app
from proxy.emulator.catalog import Case, Operation
from proxy.emulator.state import EmulatorState
from proxy.emulator.tokens import RestrictedResource, TokenKind
from tests.emulator.conftest import AiohttpClient
from tests.support.models import MODELS, requires_models

pytestmark = requires_models


def _request(op: Operation, case: Case) -> tuple[str, dict[str, str], bytes | None]:
    path, query, headers, body = op.path_template, [], {}, None
    for name, want in case.params.items():
        where = op.param_locations.get(name) or ("body" if name == "body" else "query")
        if where == "path":
            path = path.replace("{" + name + "}", quote(str(want), safe=""))
        elif where in ("query", "formData"):
            for value in want if isinstance(want, list) else [want]:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                query.append(f"{quote(name, safe='-_.~')}={quote(text, safe='-_.~')}")
        elif where == "header":
            headers[name] = str(want)
        elif not (op.method in ("GET", "HEAD") and want in ({}, None)):
            body = json.dumps(want).encode()
            headers["content-type"] = "application/json"
    for name in op.path_param_names:
        path = path.replace("{" + name + "}", "X")
    return path + ("?" + "&".join(query) if query else ""), headers, body


def _token(state: EmulatorState, op: Operation, path: str) -> str:
    if op.grantless:
        return state.tokens.issue(TokenKind.GRANTLESS, 60, scope=op.grantless_scope)
    if op.restricted:
        resource = RestrictedResource(op.method, path.partition("?")[0])
        return state.tokens.issue(TokenKind.RDT, 60, resources=(resource,))
    return state.tokens.issue(TokenKind.SELLER, 60)


async def _answers_as_written(
    client: TestClient[web.Request, web.Application], op: Operation, case: Case
) -> bool:
    state = client.app[EMULATOR_STATE]
    target, headers, body = _request(op, case)
    headers["x-amz-access-token"] = _token(state, op, target)
    url = yarl.URL(str(client.make_url("/")).rstrip("/") + target, encoded=True)
    async with client.session.request(op.method, url, headers=headers, data=body) as response:
        raw = await response.read()
        if response.status != case.status:
            return False
        if not raw:
            return case.response_body in (None, {}) or response.status == 204
        got: Any = json.loads(raw)
        return bool(got == case.response_body)


async def test_static_cases_answer_as_written(aiohttp_client: AiohttpClient) -> None:
    config = EmulatorConfig(models_dir=str(MODELS), rate_per_s=1e9, burst=10**9)
    client = await aiohttp_client(create_emulator_app(config))
    catalog = client.app[EMULATOR_STATE].catalog
    results: Counter[bool] = Counter()
    misses = []
    for op in catalog.operations:
        for case in op.cases:
            ok = await _answers_as_written(client, op, case)
            results[ok] += 1
            if not ok:
                misses.append(f"{op.operation_id} {case.status} {dict(case.params)}")
    total = results[True] + results[False]
    # 913 cases in the models; the 3 createRestrictedDataToken cases are answered by the real
    # RDT handler instead. Known misses: getAccount (sellers, shipping) lists two cases with
    # empty matchers, so only the first can ever answer; getCatalogItem's 400 case has an
    # empty asin, i.e. a path with an empty segment.
    assert total == 910
    assert results[True] / total >= 0.99, misses
