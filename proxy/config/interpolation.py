"""`${...}` placeholders in values: environment variables, their defaults, and secret files.

Interpolation runs after merging and before type conversion, on defaults, file values and
variables alike:

    ${VAR}          required: unset is an error naming the key and VAR
    ${VAR:-text}    VAR, or `text` when VAR is unset or empty
    ${file:/path}   the file's content minus one trailing newline (Docker/Kubernetes secrets)

One pass, no nesting, no escapes: `$$` is just two dollars, and text a placeholder produced
(a secret file holding `${X}`) is never expanded again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from proxy.config.errors import InvalidValue

# The second branch catches `${` with no closing brace, which would otherwise pass as text.
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WHOLE_FILE_PLACEHOLDER = re.compile(r"\$\{file:([^}]*)\}\Z")
_SHAPES = "${VAR}, ${VAR:-default} or ${file:/path}"


def interpolate_value(raw: object, environ: Mapping[str, str]) -> object:
    """`raw` with its placeholders expanded (each item of a list); other types as they are."""
    if isinstance(raw, str):
        return _interpolate(raw, environ)
    if isinstance(raw, list | tuple):
        return [interpolate_value(item, environ) for item in raw]
    return raw


def _interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Expand every placeholder in `text` once; raises InvalidValue (callers name the key)."""

    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body is None:
            raise InvalidValue(f"has an unterminated '${{'; placeholders look like {_SHAPES}")
        return _resolve(body, environ)

    return _PLACEHOLDER.sub(replace, text)


def _resolve(body: str, environ: Mapping[str, str]) -> str:
    if body.startswith("file:"):
        return _read_secret_file(body.removeprefix("file:"))
    name, has_default, default = body.partition(":-")
    if not _VAR_NAME.match(name):
        # The body is not quoted: in a secret's value it may be part of the secret.
        raise InvalidValue(f"has a malformed placeholder; use {_SHAPES}")
    value = environ.get(name)
    if has_default:
        value = value or default
    if value is None:
        raise InvalidValue(
            f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"
        )
    # LWA_CLIENT_SECRET='${file:/run/secrets/x}' means what it says: read the file. Only this
    # whole-value form is expanded from a variable; nothing else in a value is re-interpolated.
    from_file = _WHOLE_FILE_PLACEHOLDER.match(value)
    return _read_secret_file(from_file.group(1)) if from_file else value


def _read_secret_file(path: str) -> str:
    if not path:
        raise InvalidValue("has ${file:} with no path")
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except OSError as exc:
        raise InvalidValue(f"cannot read file {path!r} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InvalidValue(f"file {path!r} is not valid UTF-8") from None
    # Secret files usually end with one newline that is not part of the secret.
    return content.removesuffix("\n").removesuffix("\r")


def is_literal(raw: object) -> bool:
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
