"""Reading the YAML config file and checking its shape: sections, key names, profile names.

Values are not converted here, only found where they belong: an unknown section or key is an
error with a "did you mean" hint, a duplicate key is an error (plain YAML keeps the last one).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Hashable, Mapping
from typing import Any, NoReturn

import yaml

from proxy.config.errors import ConfigError, type_name
from proxy.config.schema import PROFILE_SECTIONS, PROFILES, SCHEMA, RawSections
from proxy.config.settings import DEFAULT_PROFILE

_PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def file_sections(path: str) -> tuple[RawSections, dict[str, RawSections]]:
    """Read the file and check its shape and names: its sections, and each profile's sections."""
    raw = _read_yaml(path)
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        known = ", ".join([*SCHEMA, PROFILES])
        raise ConfigError(path, f"the file must be a mapping of sections ({known})")
    top = {name: body for name, body in raw.items() if name != PROFILES}
    return _sections(top, "", SCHEMA), _file_profiles(raw.get(PROFILES))


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
            raise ConfigError(dotted, f"must be a mapping of keys, got {type_name(body)}")
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


def _file_profiles(raw: object) -> dict[str, RawSections]:
    """Check `profiles:` (names, then each profile's sections and keys); name -> sections."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(PROFILES, f"must be a mapping of names to profiles, got {type_name(raw)}")
    profiles: dict[str, RawSections] = {}
    for name, body in raw.items():
        where = _check_profile_name(name, profiles)
        if body is not None and not isinstance(body, dict):
            allowed = ", ".join(PROFILE_SECTIONS)
            raise ConfigError(where, f"must be a mapping of {allowed}, got {type_name(body)}")
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
