"""How configuration fails: `ConfigError` for the caller, `InvalidValue` inside the package.

Every message names the dotted key (`lwa.client_id`), the variable or the file at fault and
never holds a secret value.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or invalid; `key` is the dotted key, variable name or file path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config error at {key}: {message}")
        self.key = key
        self.message = message


class InvalidValue(Exception):
    """A value failed a conversion or check; turned into a ConfigError where the key is known."""


def type_name(value: object) -> str:
    """A value's kind in words, for messages that must not quote the value itself."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    return type(value).__name__
