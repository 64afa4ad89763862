"""`Secret`: a string that never shows itself in a repr, str() or f-string."""

from __future__ import annotations

MASK = "***"


class Secret:
    """Holds a secret value; only `reveal()` gives it back.

    Redaction lives in the type (as httpx does for headers) so a settings object,
    a log line or an exception that formats a `Secret` can never print its value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)
