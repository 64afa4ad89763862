"""The one entry point that builds `Settings`: `load_settings(path, environ)`.

Precedence, lowest first: built-in defaults (the schema's), the file, then one variable per key
(`proxy.config.environment`). Interpolation (`proxy.config.interpolation`) runs after merging
and before type conversion. Named profiles are built last, from the finished top level
(`proxy.config.profiles`).

The `aws` section is opt-in: the file sets `aws:` (even `aws: {}`), or a non-empty
`SPAPI_PROXY_AWS_*` or `SPAPI_ROLE_ARN` variable is set. `AWS_ACCESS_KEY_ID` alone does not
turn signing on: a developer's shell often holds it for unrelated work, and signing SP-API calls
with those keys would only produce confusing 403s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from proxy.config.environment import env_name, env_overrides
from proxy.config.files import file_sections
from proxy.config.profiles import build_profile
from proxy.config.schema import SCHEMA, Section
from proxy.config.settings import Settings
from proxy.config.validate import (
    check_aws_keys,
    check_client_sellers,
    check_egress_proxy,
    check_environment_proxies,
    check_exposure,
    check_shared_state,
)
from proxy.config.values import build_values


def load_settings(path: str | None, environ: Mapping[str, str]) -> Settings:
    """Build Settings from the file at `path` (optional) and `environ`; raise ConfigError."""
    given, profiles = file_sections(path) if path else ({}, {})
    overrides = env_overrides(environ)
    sections: dict[str, Any] = {}
    for name, spec in SCHEMA.items():
        if _is_enabled(name, spec, given, overrides, environ):
            file_values = given.get(name) or {}
            env_values = overrides.get(name, {})
            sections[name] = _build_section(name, spec, file_values, env_values, environ)
        else:
            sections[name] = None
    settings = Settings(**sections)
    check_aws_keys(settings.aws, "aws")
    check_exposure(settings.listen)
    check_shared_state(settings.shared_state)
    default = settings.default_profile
    named = tuple(build_profile(name, body, default, environ) for name, body in profiles.items())
    check_client_sellers(
        settings.listen, {"lwa": default.lwa, **{f"profiles.{p.name}.lwa": p.lwa for p in named}}
    )
    check_egress_proxy(settings.upstream, "upstream")
    if any(p.upstream.egress_proxy is None for p in (default, *named)):
        check_environment_proxies(environ)
    return dataclasses.replace(settings, profiles=named)


def _is_enabled(
    name: str,
    spec: Section,
    given: Mapping[str, object],
    overrides: Mapping[str, object],
    environ: Mapping[str, str],
) -> bool:
    if not spec.optional:
        return True
    return (
        given.get(name) is not None
        or name in overrides
        or any(environ.get(var) for var in spec.opt_in_env)
    )


def _build_section(
    name: str,
    spec: Section,
    file_values: Mapping[str, object],
    env_values: Mapping[str, str],
    environ: Mapping[str, str],
) -> Any:
    raw = {
        key: env_values.get(key, file_values.get(key, key_spec.default))
        for key, key_spec in spec.keys.items()
    }
    sources = {key: env_name(name, key) for key in env_values}
    return spec.build(**build_values(name, spec, raw, environ, sources))
