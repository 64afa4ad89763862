"""Config loading: the YAML schema, `${...}` interpolation, `SPAPI_PROXY_*` overrides, validation.

`load_settings` turns an optional YAML file plus an environment mapping into the frozen objects
of `proxy.settings`. Every failure is a `ConfigError` naming the dotted key (`lwa.client_id`) or
the variable; no message ever holds a secret value.

Precedence, lowest first: built-in defaults (PRODUCT.md's YAML), the file, then one variable per
key named `SPAPI_PROXY_<SECTION>_<KEY>` (`SPAPI_PROXY_LISTEN_PORT`). An empty variable counts as
unset, as in `${VAR:-}`, so compose's `FOO: ${FOO}` with FOO unset changes nothing.

Interpolation runs after merging and before type conversion, on defaults, file values and
variables alike:

    ${VAR}          required: unset is an error naming the key and VAR
    ${VAR:-text}    VAR, or `text` when VAR is unset or empty
    ${file:/path}   the file's content minus one trailing newline (Docker/Kubernetes secrets)

One pass, no nesting, no escapes: `$$` is just two dollars, and text a placeholder produced
(a secret file holding `${X}`) is never expanded again.

The `aws` section is opt-in: the file sets `aws:` (even `aws: {}`), or a non-empty
`SPAPI_PROXY_AWS_*` or `SPAPI_ROLE_ARN` variable is set. `AWS_ACCESS_KEY_ID` alone does not
turn signing on: a developer's shell often holds it for unrelated work, and signing SP-API calls
with those keys would only produce confusing 403s.

Named profiles (`profiles: {NAME: {upstream, lwa, aws}}`) come from the file only. A profile
starts from the effective top-level upstream/lwa/aws (defaults < file < variables) and replaces
just the keys it gives, so its own keys win over everything. `aws: null` in a profile turns
signing off for it; `aws: {...}` turns it on, inheriting the top-level aws keys (or the aws
defaults when signing is off at the top level).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

import yaml

from proxy.secret import MASK, Secret
from proxy.settings import (
    DEFAULT_PROFILE,
    IDEMPOTENT_METHODS,
    MAX_BUSY_POLL_US,
    REGIONS,
    AwsSettings,
    ListenSettings,
    LwaSettings,
    Profile,
    RateLimitSettings,
    RdtSettings,
    Settings,
    UpstreamSettings,
)

ENV_PREFIX = "SPAPI_PROXY_"
CONFIG_ENV = "SPAPI_PROXY_CONFIG"
# SPAPI_PROXY_* names that are not settings keys; every other one must match a key.
RESERVED_ENV = frozenset({CONFIG_ENV})

TOKEN_HEADERS = ("x-amz-access-token", "x-amzn-access-token")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class ConfigError(Exception):
    """A setting is missing or invalid; `key` is the dotted key, variable name or file path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config error at {key}: {message}")
        self.key = key
        self.message = message


class _Invalid(Exception):
    """Internal: a value failed; turned into a ConfigError where the key is known."""


# --- the schema -------------------------------------------------------------------------------

Kind = Literal["str", "int", "float", "bool", "list"]
Check = Callable[[Any], Any]  # takes the converted value, returns it normalised or raises _Invalid


@dataclass(frozen=True)
class Key:
    kind: Kind
    default: object = None
    optional: bool = False  # None or "" means "not set" and becomes None
    secret: bool = False  # wrapped in Secret, masked by render_masked
    check: Check | None = None

    def __post_init__(self) -> None:
        # Converters and checks quote bad values in messages; a secret must never reach them.
        assert not self.secret or (self.kind == "str" and self.check is None)


@dataclass(frozen=True)
class Section:
    build: type[Any]  # the settings dataclass; its field names are the keys
    keys: Mapping[str, Key]
    optional: bool = False  # absent (None on Settings) unless opted into
    opt_in_env: tuple[str, ...] = ()  # extra variables whose being set enables the section


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise _Invalid(f"must be between 1 and 65535, got {value}")
    return value


def _check_positive(value: float) -> float:
    if value <= 0:
        raise _Invalid(f"must be greater than 0, got {value}")
    return value


def _check_not_negative(value: float) -> float:
    if value < 0:
        raise _Invalid(f"must be 0 or more, got {value}")
    return value


def _check_busy_poll(value: int) -> int:
    if not 0 <= value <= MAX_BUSY_POLL_US:
        raise _Invalid(f"must be 0 (off) to {MAX_BUSY_POLL_US} microseconds, got {value}")
    return value


def _check_region(value: str) -> str:
    region = value.lower()
    if region not in REGIONS:
        raise _Invalid(f"must be one of {', '.join(REGIONS)}, got {value!r}")
    return region


def _check_endpoint(value: str) -> str:
    # The path comes from the client request, so a path here would be silently dropped.
    parts = _split_http_url(value, "http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _Invalid("must be http(s)://host[:port] with no path or query")
    return f"{parts.scheme}://{parts.netloc}"


def _check_http_url(value: str) -> str:
    _split_http_url(value, "an http(s):// URL")
    return value


def _split_http_url(value: str, shape: str) -> Any:
    # The value itself is not quoted: a URL may carry user:password.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"must be {shape}")
    if parts.username is not None:
        raise _Invalid("must not contain user:password@")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise _Invalid(f"must be {shape} with a valid port") from None
    return parts


def _check_readable_file(value: str) -> str:
    path = os.path.expanduser(value)
    if not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise _Invalid(f"file {value!r} does not exist or is not readable")
    return path


def _check_token_headers(value: tuple[str, ...]) -> tuple[str, ...]:
    headers = tuple(dict.fromkeys(h.lower() for h in value))  # dedupe, keep order
    if not headers:
        raise _Invalid(f"must list at least one of {', '.join(TOKEN_HEADERS)}")
    for header in headers:
        if header not in TOKEN_HEADERS:
            raise _Invalid(f"{header!r} is not one of {', '.join(TOKEN_HEADERS)}")
    return headers


_METHOD = re.compile(r"[A-Z]+\Z")


def _check_methods(value: tuple[str, ...]) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(m.upper() for m in value))  # dedupe, keep order
    for method in methods:
        if not _METHOD.match(method):
            raise _Invalid(f"{method!r} is not an HTTP method name (letters only, like GET)")
    return methods


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/\S+\Z")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}\Z")


def _check_role_arn(value: str) -> str:
    # Catches the common paste of a user ARN or an app id, which STS would only reject later.
    if not _ROLE_ARN.match(value):
        raise _Invalid("must be an IAM role ARN like arn:aws:iam::123456789012:role/Name")
    return value


def _check_session_name(value: str) -> str:
    if not _SESSION_NAME.match(value):
        raise _Invalid("must be 2-64 characters of letters, digits and +=,.@_-")
    return value


SCHEMA: dict[str, Section] = {
    "listen": Section(
        ListenSettings,
        {
            "host": Key("str", "127.0.0.1"),
            "port": Key("int", 8000, check=_check_port),
            "auth_token": Key("str", None, optional=True, secret=True),
            "allow_unauthenticated": Key("bool", False),
            "max_body_bytes": Key("int", 10 * 1024 * 1024, check=_check_positive),
            # 0 is a valid choice here: stop at once without waiting for requests in flight.
            "drain_timeout_s": Key("float", 10.0, check=_check_not_negative),
            "workers": Key("int", 1, check=_check_positive),
            "busy_poll_us": Key("int", 50, check=_check_busy_poll),
            "header_timeout_s": Key("float", 10.0, check=_check_positive),
            "keepalive_timeout_s": Key("float", 15.0, check=_check_positive),
            "body_timeout_s": Key("float", 10.0, check=_check_positive),
            # Absent: derived from the process's descriptor limit when the server starts.
            "max_connections": Key("int", None, optional=True, check=_check_positive),
        },
    ),
    "upstream": Section(
        UpstreamSettings,
        {
            "region": Key("str", "na", check=_check_region),
            "sandbox": Key("bool", True),
            "endpoint": Key("str", None, optional=True, check=_check_endpoint),
            "timeout_s": Key("float", 30.0, check=_check_positive),
            "ca_bundle": Key("str", None, optional=True, check=_check_readable_file),
            "user_agent": Key("str", None, optional=True),
            "max_connections": Key("int", 100, check=_check_positive),
        },
    ),
    "lwa": Section(
        LwaSettings,
        {
            "client_id": Key("str", "${LWA_CLIENT_ID}"),
            "client_secret": Key("str", "${LWA_CLIENT_SECRET}", secret=True),
            "refresh_token": Key("str", "${LWA_REFRESH_TOKEN}", secret=True),
            "token_url": Key("str", "https://api.amazon.com/auth/o2/token", check=_check_http_url),
            "token_headers": Key("list", ("x-amz-access-token",), check=_check_token_headers),
            "timeout_s": Key("float", 10.0, check=_check_positive),
        },
    ),
    "aws": Section(
        AwsSettings,
        {
            # Empty means "not set": keys from botocore's default chain, no AssumeRole.
            "access_key_id": Key("str", "${AWS_ACCESS_KEY_ID:-}", optional=True),
            "secret_access_key": Key(
                "str", "${AWS_SECRET_ACCESS_KEY:-}", optional=True, secret=True
            ),
            # Temporary keys (ASIA…, from aws sso, aws-vault or a CI runner) only sign with it.
            "session_token": Key("str", "${AWS_SESSION_TOKEN:-}", optional=True, secret=True),
            "role_arn": Key("str", "${SPAPI_ROLE_ARN:-}", optional=True, check=_check_role_arn),
            "role_session_name": Key("str", "spapi-proxy", check=_check_session_name),
            "sts_endpoint": Key("str", None, optional=True, check=_check_http_url),
            "timeout_s": Key("float", 10.0, check=_check_positive),
        },
        optional=True,
        opt_in_env=("SPAPI_ROLE_ARN",),
    ),
    "rdt": Section(
        RdtSettings,
        {
            "enabled": Key("bool", True),
            "max_cached": Key("int", 10_000, check=_check_positive),
        },
    ),
    "rate_limits": Section(
        RateLimitSettings,
        {
            "enabled": Key("bool", True),
            "max_wait_s": Key("float", 10.0, check=_check_not_negative),
            "retries": Key("int", 2, check=_check_not_negative),
            "retry_methods": Key("list", IDEMPOTENT_METHODS, check=_check_methods),
        },
    ),
}

# The top-level key holding named profiles, and the sections a profile may set; the other
# sections (listen, rdt, rate_limits) are proxy-wide.
PROFILES = "profiles"
PROFILE_SECTIONS = ("upstream", "lwa", "aws")


def env_name(section: str, key: str) -> str:
    """The variable that overrides `section.key`, e.g. SPAPI_PROXY_LWA_CLIENT_SECRET."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


# --- public entry points ----------------------------------------------------------------------


def config_path_from(cli_value: str | None, environ: Mapping[str, str]) -> str | None:
    """`--config FILE`, else `$SPAPI_PROXY_CONFIG`, else None (defaults + environment)."""
    return cli_value or environ.get(CONFIG_ENV) or None


def load_settings(path: str | None, environ: Mapping[str, str]) -> Settings:
    """Build Settings from the file at `path` (optional) and `environ`; raise ConfigError."""
    given, profiles = _file_sections(path) if path else ({}, {})
    overrides = _env_overrides(environ)
    sections: dict[str, Any] = {}
    for name, spec in SCHEMA.items():
        if _is_enabled(name, spec, given, overrides, environ):
            file_values = given.get(name) or {}
            env_values = overrides.get(name, {})
            sections[name] = _build_section(name, spec, file_values, env_values, environ)
        else:
            sections[name] = None
    settings = Settings(**sections)
    _check_aws_keys(settings.aws, "aws")
    check_exposure(settings.listen)
    default = settings.default_profile
    named = tuple(_build_profile(name, body, default, environ) for name, body in profiles.items())
    return dataclasses.replace(settings, profiles=named)


def check_exposure(listen: ListenSettings) -> None:
    """Refuse a non-loopback listener that anyone could use; call again after a --host override."""
    if listen.is_loopback or listen.auth_token or listen.allow_unauthenticated:
        return
    raise ConfigError(
        "listen.host",
        f"{listen.host!r} is not a loopback address, so set listen.auth_token (clients then "
        "send x-spapi-proxy-key) or, to accept anyone who can reach it, "
        "listen.allow_unauthenticated: true",
    )


def render_masked(settings: Settings) -> str:
    """The effective config as YAML, every secret shown as `***`, for `check-config`.

    Each profile is shown fully resolved (inherited keys included), so the output loads back.
    """
    doc: dict[str, object] = {
        name: _render_section(name, getattr(settings, name))
        for name in SCHEMA
        if getattr(settings, name) is not None
    }
    doc[PROFILES] = {
        profile.name: {
            name: _render_section(name, getattr(profile, name)) for name in PROFILE_SECTIONS
        }
        for profile in settings.profiles
    }
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    if settings.aws is None:
        text += "# aws: not set, so requests carry the LWA token only (no SigV4 signature)\n"
    else:
        text += f"# aws: signing with {settings.aws.source}\n"
    text += "".join(
        f"# profile {profile.name} aws: signing with {profile.aws.source}\n"
        for profile in settings.profiles
        if profile.aws is not None
    )
    text += _upstream_note("upstream", settings.default_profile)
    return text + "".join(_upstream_note(f"profile {p.name}", p) for p in settings.profiles)


def file_mode_warning(path: str, settings: Settings) -> str | None:
    """A warning when a group/other-readable config file holds a secret in plain text."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    keys = _literal_secret_keys(path, settings)
    if not keys:
        return None
    return (
        f"{path} is readable by other users (mode {mode:04o}) and holds secrets in plain text "
        f"at {', '.join(keys)}; run `chmod 600 {path}` or use ${{VAR}} / ${{file:/path}} "
        "placeholders"
    )


# --- reading the file -------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which plain YAML silently resolves to the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(str(key), f"duplicate key on line {line} of the config file")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(path, f"cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "the config file is not valid UTF-8") from None
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        # Only the position and the problem: the parser's snippet may show a secret's line.
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(path, f"invalid YAML at {where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError:
        raise ConfigError(path, "invalid YAML") from None
    finally:
        loader.dispose()


# section -> its keys as written (None for a section written as null)
RawSections = dict[str, dict[str, object] | None]


def _file_sections(path: str) -> tuple[RawSections, dict[str, RawSections]]:
    """Read the file and check its shape and names: its sections, and each profile's sections."""
    raw = _read_yaml(path)
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        known = ", ".join([*SCHEMA, PROFILES])
        raise ConfigError(path, f"the file must be a mapping of sections ({known})")
    top = {name: body for name, body in raw.items() if name != PROFILES}
    return _sections(top, "", SCHEMA), _file_profiles(raw.get(PROFILES))


def _sections(raw: Mapping[Any, object], where: str, allowed: Collection[str]) -> RawSections:
    """Check the section and key names in `raw`, found at `where` ("" or "profiles.NAME")."""
    prefix = f"{where}." if where else ""
    sections: RawSections = {}
    for name, body in raw.items():
        dotted = f"{prefix}{name}"
        if str(name) not in allowed:
            _unknown_section(dotted, prefix, allowed)
        spec = SCHEMA[str(name)]
        if body is not None and not isinstance(body, dict):
            raise ConfigError(dotted, f"must be a mapping of keys, got {_type_name(body)}")
        for key in body or {}:
            if str(key) not in spec.keys:
                _unknown(f"{dotted}.{key}", spec.keys, f"{dotted}.", "key")
        sections[str(name)] = None if body is None else {str(k): v for k, v in body.items()}
    return sections


def _unknown_section(dotted: str, prefix: str, allowed: Collection[str]) -> NoReturn:
    name = dotted.removeprefix(prefix)
    if not prefix:
        _unknown(dotted, [*allowed, PROFILES], prefix, "section")
    if name in SCHEMA:
        raise ConfigError(
            dotted,
            f"{name} is proxy-wide: set it at the top level (a profile sets only "
            f"{', '.join(allowed)})",
        )
    _unknown(dotted, allowed, prefix, "section")


def _unknown(dotted: str, known: Collection[str], prefix: str, what: str) -> NoReturn:
    name = dotted.removeprefix(prefix)
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    raise ConfigError(dotted, f"unknown {what}{hint} (known: {', '.join(known)})")


# --- the environment --------------------------------------------------------------------------


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
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


# --- building values --------------------------------------------------------------------------


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
    return spec.build(**_build_values(name, spec, raw, environ, sources))


def _build_values(
    where: str,
    spec: Section,
    raw: Mapping[str, object],
    environ: Mapping[str, str],
    sources: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Each key of `raw` interpolated, converted and checked; errors name `where.key`."""
    sources = sources or {}
    return {
        key: _build_value(f"{where}.{key}", spec.keys[key], value, environ, sources.get(key))
        for key, value in raw.items()
    }


def _build_value(
    dotted: str, spec: Key, raw: object, environ: Mapping[str, str], source: str | None
) -> object:
    value: object = None
    try:
        value = _interpolate_value(raw, environ)
        return _convert(spec, value)
    except _Invalid as exc:
        notes = [f"set by {source}"] if source else []
        if value == "" and isinstance(raw, str) and raw:
            # An empty result means raw held only placeholders, so showing it reveals nothing.
            notes.append(f"{raw!r} expanded to an empty string")
        detail = f" ({'; '.join(notes)})" if notes else ""
        raise ConfigError(dotted, f"{exc}{detail}") from None


def _convert(spec: Key, value: object) -> object:
    if value is None or value == "":
        if spec.optional:
            return None
        if value is None:
            raise _Invalid("must be set (leave the key out to use the default)")
    converted = _CONVERTERS[spec.kind](value)
    if spec.check is not None:
        converted = spec.check(converted)
    return Secret(str(converted)) if spec.secret else converted


def _to_str(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(f"expected a string, got {_type_name(value)}")
    text = str(value)
    if not text:
        raise _Invalid("must not be empty")
    return text


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Invalid(f"expected a whole number, got {value!r}")


def _to_float(value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise _Invalid(f"expected a number, got {value!r}")
    return number


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid(f"expected true or false (or yes/no, on/off, 1/0), got {value!r}")


def _to_list(value: object) -> tuple[str, ...]:
    # A variable can only carry a string, so "a, b" is the list [a, b].
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise _Invalid(f"expected a list, got {_type_name(value)}")
    return tuple(text for text in (_to_str(item).strip() for item in items) if text)


_CONVERTERS: dict[Kind, Callable[[object], object]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "list": _to_list,
}


def _type_name(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    return type(value).__name__


# --- interpolation ----------------------------------------------------------------------------

# The second branch catches `${` with no closing brace, which would otherwise pass as text.
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WHOLE_FILE_PLACEHOLDER = re.compile(r"\$\{file:([^}]*)\}\Z")
_SHAPES = "${VAR}, ${VAR:-default} or ${file:/path}"


def _interpolate_value(raw: object, environ: Mapping[str, str]) -> object:
    if isinstance(raw, str):
        return _interpolate(raw, environ)
    if isinstance(raw, list | tuple):
        return [_interpolate_value(item, environ) for item in raw]
    return raw


def _interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Expand every placeholder in `text` once; raises _Invalid (callers name the key)."""

    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body is None:
            raise _Invalid(f"has an unterminated '${{'; placeholders look like {_SHAPES}")
        return _resolve(body, environ)

    return _PLACEHOLDER.sub(replace, text)


def _resolve(body: str, environ: Mapping[str, str]) -> str:
    if body.startswith("file:"):
        return _read_secret_file(body.removeprefix("file:"))
    name, has_default, default = body.partition(":-")
    if not _VAR_NAME.match(name):
        # The body is not quoted: in a secret's value it may be part of the secret.
        raise _Invalid(f"has a malformed placeholder; use {_SHAPES}")
    value = environ.get(name)
    if has_default:
        value = value or default
    if value is None:
        raise _Invalid(
            f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"
        )
    # LWA_CLIENT_SECRET='${file:/run/secrets/x}' means what it says: read the file. Only this
    # whole-value form is expanded from a variable; nothing else in a value is re-interpolated.
    from_file = _WHOLE_FILE_PLACEHOLDER.match(value)
    return _read_secret_file(from_file.group(1)) if from_file else value


def _read_secret_file(path: str) -> str:
    if not path:
        raise _Invalid("has ${file:} with no path")
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except OSError as exc:
        raise _Invalid(f"cannot read file {path!r} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise _Invalid(f"file {path!r} is not valid UTF-8") from None
    # Secret files usually end with one newline that is not part of the secret.
    return content.removesuffix("\n").removesuffix("\r")


# --- profiles ---------------------------------------------------------------------------------

_PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
# Keys that only work together: a profile that changes one must give the other, or it would
# pair its own client id with the top-level client secret (LWA then says invalid_client).
_PAIRS = {"lwa": ("client_id", "client_secret"), "aws": ("access_key_id", "secret_access_key")}


def _file_profiles(raw: object) -> dict[str, RawSections]:
    """Check `profiles:` (names, then each profile's sections and keys); name -> sections."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            PROFILES, f"must be a mapping of names to profiles, got {_type_name(raw)}"
        )
    profiles: dict[str, RawSections] = {}
    for name, body in raw.items():
        where = _check_profile_name(name, profiles)
        if body is not None and not isinstance(body, dict):
            allowed = ", ".join(PROFILE_SECTIONS)
            raise ConfigError(where, f"must be a mapping of {allowed}, got {_type_name(body)}")
        profiles[name] = _sections(body or {}, where, PROFILE_SECTIONS)
    return profiles


def _check_profile_name(name: object, seen: Collection[str]) -> str:
    where = f"{PROFILES}.{name}"
    if not isinstance(name, str) or not _PROFILE_NAME.match(name):
        raise ConfigError(
            where,
            "a profile name is 1-64 letters, digits, _ or - (quote a name that YAML would read "
            "as a number or a boolean)",
        )
    if name.lower() == DEFAULT_PROFILE:
        raise ConfigError(
            where, "the name 'default' is reserved for the top-level upstream, lwa and aws"
        )
    same = [other for other in seen if other.lower() == name.lower()]
    if same:
        raise ConfigError(where, f"differs from profile {same[0]!r} only in letter case")
    return where


def _build_profile(
    name: str, body: RawSections, default: Profile, environ: Mapping[str, str]
) -> Profile:
    """The default profile with the sections and keys that `body` gives replaced."""
    where = f"{PROFILES}.{name}"
    sections: dict[str, Any] = {}
    for section in PROFILE_SECTIONS:
        inherited, given = getattr(default, section), body.get(section)
        if given is not None:
            sections[section] = _inherit(f"{where}.{section}", section, inherited, given, environ)
        elif section == "aws" and section in body:
            sections[section] = None  # `aws: null`: no signing for this profile
        else:
            sections[section] = inherited  # not given, or `upstream: null` / `lwa: null`
    profile = Profile(name, **sections)
    _check_aws_keys(profile.aws, f"{where}.aws")
    return profile


def _inherit(
    where: str,
    section: str,
    inherited: Any,
    given: Mapping[str, object],
    environ: Mapping[str, str],
) -> Any:
    spec = SCHEMA[section]
    if inherited is None:  # aws given in a profile while off at the top level: its defaults
        raw = {key: given.get(key, key_spec.default) for key, key_spec in spec.keys.items()}
        return spec.build(**_build_values(where, spec, raw, environ))
    own = _build_values(where, spec, given, environ)
    pair = _PAIRS.get(section, ())
    for changed, other in zip(pair, reversed(pair), strict=True):
        if changed in own and other not in own and own[changed] != getattr(inherited, changed):
            raise ConfigError(
                f"{where}.{other}",
                f"{where}.{changed} is not the inherited {section}.{changed}, so set "
                f"{where}.{other} too: the two only work together",
            )
    if section == "aws":
        # A session token belongs to the temporary key it was issued with, never to another.
        key_id = own.get("access_key_id", inherited.access_key_id)
        if key_id != inherited.access_key_id:
            own.setdefault("session_token", None)
    return dataclasses.replace(inherited, **own)


# --- cross-key checks and rendering -----------------------------------------------------------


def _check_aws_keys(aws: AwsSettings | None, where: str) -> None:
    if aws is None:
        return
    _check_session_token(aws, where)
    if bool(aws.access_key_id) == bool(aws.secret_access_key):
        return
    given, missing = (
        (f"{where}.access_key_id", f"{where}.secret_access_key")
        if aws.access_key_id
        else (f"{where}.secret_access_key", f"{where}.access_key_id")
    )
    raise ConfigError(
        missing,
        f"{given} is set but {missing} is not; set both, or neither to use "
        "botocore's default credential chain",
    )


def _check_session_token(aws: AwsSettings, where: str) -> None:
    """AWS refuses a long-term key (AKIA…) sent with a session token, and a temporary one
    (ASIA…) sent without: both are certain 403s, so they are refused here, by name."""
    key_id = aws.access_key_id or ""
    if key_id.startswith("AKIA") and aws.session_token:
        raise ConfigError(
            f"{where}.session_token",
            f"is set, but {where}.access_key_id is a long-term key (AKIA…), which AWS refuses "
            "with a session token; unset AWS_SESSION_TOKEN or set session_token: ''",
        )
    if key_id.startswith("ASIA") and not aws.session_token:
        raise ConfigError(
            f"{where}.session_token",
            f"is not set, but {where}.access_key_id is a temporary key (ASIA…), which AWS "
            "refuses without its session token; set AWS_SESSION_TOKEN or aws.session_token",
        )


def _render_section(name: str, section: object | None) -> dict[str, object] | None:
    if section is None:
        return None
    return {key: _plain(getattr(section, key)) for key in SCHEMA[name].keys}


def _upstream_note(label: str, profile: Profile) -> str:
    upstream, signing = profile.upstream, "on" if profile.aws else "off"
    return (
        f"# {label}: {upstream.base_url} "
        f"(SigV4 region {upstream.signing_region}; signing: {signing})\n"
    )


def _plain(value: object) -> object:
    if isinstance(value, Secret):
        return MASK if value else ""
    if isinstance(value, tuple):
        return list(value)
    return value


def _literal_secret_keys(path: str, settings: Settings) -> list[str]:
    try:
        sections, profiles = _file_sections(path)
    except ConfigError:
        return []
    # A section not in effect (top-level aws off) holds nothing that is used.
    in_effect = {n: body for n, body in sections.items() if getattr(settings, n) is not None}
    found = _literal_secrets("", in_effect)
    for name, body in profiles.items():
        found += _literal_secrets(f"{PROFILES}.{name}.", body)
    return found


def _literal_secrets(prefix: str, sections: RawSections) -> list[str]:
    return [
        f"{prefix}{name}.{key}"
        for name, body in sections.items()
        for key, value in (body or {}).items()
        if SCHEMA[name].keys[key].secret and _is_literal(value)
    ]


def _is_literal(raw: object) -> bool:
    """True when a raw value carries secret text itself rather than only pointing at it."""
    if raw is None or raw == "":
        return False
    if not isinstance(raw, str):
        return True
    if _PLACEHOLDER.sub("", raw).strip():
        return True
    # `${VAR:-fallback}` keeps its fallback in the file.
    bodies = (m.group(1) or "" for m in _PLACEHOLDER.finditer(raw))
    return any(not b.startswith("file:") and b.partition(":-")[2] for b in bodies)
