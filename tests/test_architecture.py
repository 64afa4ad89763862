"""The import rules of docs/architecture.md, checked on the source: each group of modules imports
only the groups below it, so the layers stay what the document says they are."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PROXY = Path(__file__).resolve().parents[1] / "proxy"
# The commands sit on top; the pytest plugin is one too (it starts the emulator and the proxy).
COMMANDS = frozenset({"cli", "doctor", "demo", "__main__", "pytest_plugin"})
BASE = frozenset({"secret", "errors", "config"})

# What each group may import besides itself; an entry with a dot allows that one module only.
ALLOWED: dict[str, frozenset[str]] = {
    "secret": frozenset(),
    "errors": frozenset({"http.errors"}),
    "config": frozenset({"secret"}),
    "observability": BASE,
    "http": frozenset(),
    "credentials": BASE | {"observability", "http"},
    "forwarding": BASE | {"observability", "http", "credentials", "server.answers"},
    "fleet": BASE
    | {"observability", "http", "credentials", "forwarding.operations", "forwarding.ratelimit"},
    "profiles": BASE | {"observability", "http", "credentials", "forwarding", "fleet"},
    "server": BASE | {"observability", "http", "credentials", "forwarding", "fleet", "profiles"},
    "emulator": BASE | {"observability", "credentials", "forwarding"},
    # imported by applications next to their SP-API SDK: it must load without the proxy's parts
    "sdk": frozenset(),
}


def group_of(module: str) -> str:
    """`proxy.server.front_door` -> `server`; `proxy` (its __init__) -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("proxy"):
            if node.module == "proxy":  # `from proxy import x`: x is a module, or a name of the
                for alias in node.names:  # package's own (__version__), which anyone may use
                    is_module = (PROXY / alias.name).is_dir() or (
                        PROXY / f"{alias.name}.py"
                    ).is_file()
                    yield f"proxy.{alias.name}" if is_module else "proxy"
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("proxy."))


def allowed(importer: str, imported: str, rules: frozenset[str]) -> bool:
    target = imported.split(".", 1)[1] if "." in imported else "__init__"
    target_group = group_of(imported)
    return (
        target_group == importer
        or target_group in rules
        or any(target == rule or target.startswith(rule + ".") for rule in rules if "." in rule)
    )


def violations() -> list[str]:
    found = []
    for path in sorted(PROXY.rglob("*.py")):
        module = ".".join(path.relative_to(PROXY.parent).with_suffix("").parts)
        importer = group_of(module)
        if importer in COMMANDS or importer == "__init__":
            continue
        rules = ALLOWED.get(importer)
        if rules is None:
            found.append(f"{module}: group {importer!r} has no rule in docs/architecture.md")
            continue
        found += [
            f"{module} imports {imported}"
            for imported in imports(path)
            if imported != "proxy" and not allowed(importer, imported, rules)
        ]
    return found


def test_every_module_imports_only_the_layers_below_it() -> None:
    assert violations() == []


def test_the_rules_catch_an_upward_import() -> None:
    rules = ALLOWED["credentials"]
    assert not allowed("credentials", "proxy.forwarding.forward", rules)
    assert not allowed("forwarding", "proxy.server.front_door", ALLOWED["forwarding"])
    assert allowed("forwarding", "proxy.server.answers", ALLOWED["forwarding"])


def test_a_proxy_that_shares_nothing_loads_no_redis_client_or_cipher() -> None:
    # ~25 MiB per process: only a proxy configured with shared_state.redis_url pays for them.
    probe = (
        "import sys, proxy.cli, proxy.server.app, proxy.server.front_door, proxy.server.run, "
        "proxy.server.endpoints, proxy.profiles; "
        "print(sorted(m for m in ('redis', 'cryptography') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
