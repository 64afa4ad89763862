"""Generates postman/: a Postman collection and environment from the emulator's built-in catalogue.

Usage: python scripts/gen_postman.py [--check]

One request per static case of the built-in catalogue (proxy/emulator/catalog/*.json), in one
folder per API, each with a test on the status the case answers with. The requests carry no
auth: the proxy adds the token and the signature, so a collection aimed at it must not. The
environment holds `baseUrl`, the proxy's address. The output is the same on every run (ids are
derived from names), so --check can tell CI the files are up to date.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from proxy.emulator.catalog import Case, Operation, builtin_operations  # noqa: E402

OUTPUT_DIR = REPO_ROOT / "postman"
COLLECTION = OUTPUT_DIR / "spapi-proxy.postman_collection.json"
ENVIRONMENT = OUTPUT_DIR / "spapi-proxy.postman_environment.json"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
# Postman wants ids; deriving them from names keeps the output the same on every run.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/spapi-proxy/postman")
# Unreserved characters only: a value that is already percent-encoded is sent as it is.
UNRESERVED = "-._~"


def stable_id(name: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, name))


def text(value: Any) -> str:
    """A sandbox parameter as it travels in a URL: arrays comma-separated (Swagger's csv)."""
    if isinstance(value, list):
        return ",".join(text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def where(op: Operation, name: str) -> str:
    return op.param_locations.get(name) or "query"


def request_for(op: Operation, case: Case) -> dict[str, Any]:
    """Postman's request object for one case; no auth, the proxy signs."""
    path = op.path_template
    query: list[dict[str, str]] = []
    headers: list[dict[str, str]] = []
    body: Any = None
    for name, value in case.params.items():
        location = where(op, name)
        if location == "path":
            path = path.replace("{" + name + "}", quote(text(value), safe=UNRESERVED))
        elif location == "header":
            headers.append({"key": name, "value": text(value)})
        elif location == "body":
            body = value
        else:
            query.append({"key": name, "value": quote(text(value), safe=UNRESERVED)})
    raw = "{{baseUrl}}" + path
    if query:
        raw += "?" + "&".join(f"{item['key']}={item['value']}" for item in query)
    url: dict[str, Any] = {
        "raw": raw,
        "host": ["{{baseUrl}}"],
        "path": [segment for segment in path.split("/") if segment],
    }
    if query:
        url["query"] = query
    request: dict[str, Any] = {"method": op.method, "header": headers, "url": url}
    if body is not None:
        headers.append({"key": "Content-Type", "value": "application/json"})
        request["body"] = {
            "mode": "raw",
            "raw": json.dumps(body, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    return request


def status_test(status: int) -> dict[str, Any]:
    """The case's status, answered by Amazon's sandbox and not by the proxy itself."""
    return {
        "listen": "test",
        "script": {
            "type": "text/javascript",
            "exec": [
                f'pm.test("status is {status}", function () {{',
                f"    pm.response.to.have.status({status});",
                "});",
                'pm.test("answered by SP-API, not by the proxy", function () {',
                '    pm.expect(pm.response.headers.has("x-spapi-proxy-error")).to.be.false;',
                "});",
            ],
        },
    }


def folder_name(op: Operation) -> str:
    """`orders v0` for /orders/v0/...: the API and its version, as the path names them."""
    return " ".join(op.path_template.split("/")[1:3])


def collection(operations: list[Operation]) -> dict[str, Any]:
    folders: dict[str, list[dict[str, Any]]] = {}
    for op in operations:
        names: dict[str, int] = {}
        for case in op.cases:
            name = f"{op.operation_id} {case.status}"
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:
                name = f"{name} ({names[name]})"
            folders.setdefault(folder_name(op), []).append(
                {
                    "name": name,
                    "event": [status_test(case.status)],
                    "request": request_for(op, case),
                }
            )
    return {
        "info": {
            "_postman_id": stable_id("collection"),
            "name": "spapi-proxy",
            "description": (
                "Every static case of spapi-proxy's offline emulator, sent through the proxy. "
                "No auth on any request: the proxy adds the LWA token (or the restricted data "
                "token) and the SigV4 signature. Import the environment too and set baseUrl to "
                "the proxy, e.g. http://127.0.0.1:8000 for `spapi-proxy demo`. Generated by "
                "scripts/gen_postman.py; do not edit by hand."
            ),
            "schema": SCHEMA,
        },
        "auth": {"type": "noauth"},
        "item": [{"name": name, "item": items} for name, items in folders.items()],
    }


def environment() -> dict[str, Any]:
    return {
        "id": stable_id("environment"),
        "name": "spapi-proxy",
        "values": [
            {"key": "baseUrl", "value": DEFAULT_BASE_URL, "type": "default", "enabled": True}
        ],
        "_postman_variable_scope": "environment",
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    return {
        COLLECTION: render(collection(builtin_operations())),
        ENVIRONMENT: render(environment()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed files differ from the output"
    )
    args = parser.parse_args(argv)
    files = generated()
    if args.check:
        stale = [
            path
            for path, content in files.items()
            if not path.exists() or path.read_text(encoding="utf-8") != content
        ]
        for path in stale:
            print(
                f"{path.relative_to(REPO_ROOT)} is out of date: run python scripts/gen_postman.py",
                file=sys.stderr,
            )
        return 1 if stale else 0
    OUTPUT_DIR.mkdir(exist_ok=True)
    for path, content in files.items():
        path.write_text(content, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
