"""The environment's part: one `SPAPI_PROXY_<SECTION>_<KEY>` variable per key, and the config path.

A variable overrides the file's value for its key (`SPAPI_PROXY_LISTEN_PORT` for listen.port).
An empty variable counts as unset, as in `${VAR:-}`, so compose's `FOO: ${FOO}` with FOO unset
changes nothing. Any other `SPAPI_PROXY_*` name is an error, so a typo is never silently ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from proxy.config.errors import ConfigError
from proxy.config.schema import PROFILES, SCHEMA

ENV_PREFIX = "SPAPI_PROXY_"
CONFIG_ENV = "SPAPI_PROXY_CONFIG"
# SPAPI_PROXY_* names that are not settings keys; every other one must match a key.
RESERVED_ENV = frozenset({CONFIG_ENV})


def env_name(section: str, key: str) -> str:
    """The variable that overrides `section.key`, e.g. SPAPI_PROXY_LWA_CLIENT_SECRET."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def config_path_from(cli_value: str | None, environ: Mapping[str, str]) -> str | None:
    """`--config FILE`, else `$SPAPI_PROXY_CONFIG`, else None (defaults + environment)."""
    return cli_value or environ.get(CONFIG_ENV) or None


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """section -> key -> value from SPAPI_PROXY_* variables; an unknown name is an error."""
    table = {env_name(s, k): (s, k) for s, spec in SCHEMA.items() for k in spec.keys}
    overrides: dict[str, dict[str, str]] = {}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in RESERVED_ENV:
            continue
        if var.startswith(f"{ENV_PREFIX}{PROFILES.upper()}_"):
            raise ConfigError(
                var, "profiles come from the config file only (a profile's values may use ${VAR})"
            )
        if var not in table:
            close = difflib.get_close_matches(var, list(table), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(var, f"unknown {ENV_PREFIX}* variable{hint}")
        if environ[var]:
            section, key = table[var]
            overrides.setdefault(section, {})[key] = environ[var]
    return overrides
