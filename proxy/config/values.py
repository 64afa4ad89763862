"""One raw value (from a default, the file or a variable) to its typed form.

Each value is interpolated, converted to its key's kind and checked; a failure becomes a
`ConfigError` naming the dotted key and, when a variable set it, that variable.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping

from proxy.config.errors import ConfigError, InvalidValue, type_name
from proxy.config.interpolation import interpolate_value
from proxy.config.schema import Key, Kind, Section
from proxy.secret import Secret

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def build_values(
    where: str,
    spec: Section,
    raw: Mapping[str, object],
    environ: Mapping[str, str],
    sources: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Each key of `raw` interpolated, converted and checked; errors name `where.key`.

    `sources` maps a key to the variable that set it, so its error can say so.
    """
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
        value = interpolate_value(raw, environ)
        return _convert(spec, value)
    except InvalidValue as exc:
        notes = [f"set by {source}"] if source else []
        if value == "" and isinstance(raw, str) and raw:
            # An empty result means raw held only placeholders, so showing it reveals nothing.
            notes.append(f"{raw!r} expanded to an empty string")
        detail = f" ({'; '.join(notes)})" if notes else ""
        raise ConfigError(dotted, f"{exc}{detail}") from None


def _convert(spec: Key, value: object) -> object:
    if value is None or value == "":
        if value == "" and spec.empty_is_value:
            return Secret("") if spec.secret else ""
        if spec.optional:
            return None
        if value is None:
            raise InvalidValue("must be set (leave the key out to use the default)")
    converted = _CONVERTERS[spec.kind](value)
    if spec.check is not None:
        converted = spec.check(converted)
    return Secret(str(converted)) if spec.secret else converted


def _to_str(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidValue(f"expected a string, got {type_name(value)}")
    text = str(value)
    if not text:
        raise InvalidValue("must not be empty")
    return text


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InvalidValue(f"expected a whole number, got {value!r}")


def _to_float(value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise InvalidValue(f"expected a number, got {value!r}")
    return number


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidValue(f"expected true or false (or yes/no, on/off, 1/0), got {value!r}")


def _to_list(value: object) -> tuple[str, ...]:
    # A variable can only carry a string, so "a, b" is the list [a, b].
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InvalidValue(f"expected a list, got {type_name(value)}")
    return tuple(text for text in (_to_str(item).strip() for item in items) if text)


_CONVERTERS: dict[Kind, Callable[[object], object]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "list": _to_list,
}
