"""What every type module returns, and small helpers they share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.errors import InvalidSignal
from app.signals.vocab import SignalType

__all__ = ["Canonical", "require_hex", "require_str"]


@dataclass(frozen=True)
class Canonical:
    """A signal value in canonical form.

    `value` is what is stored, signed and matched exactly; `extra` carries the facts about it that
    travel with the signal (`quality` for pdq, `domain` for url, `key_id` for identifiers).
    """

    type: SignalType
    value: str
    extra: dict[str, str | int] = field(default_factory=dict)


def require_str(value: object, field: str = "value", *, max_len: int = 8192) -> str:
    """`value` as a string with surrounding whitespace removed."""
    if not isinstance(value, str):
        raise InvalidSignal(field, f"must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidSignal(field, f"longer than {max_len} characters")
    return value.strip()


_HEX = re.compile(r"[0-9a-fA-F]*")


def require_hex(value: object, n_chars: int, what: str, field: str = "value") -> str:
    """`value` as exactly `n_chars` hex digits, lowercased (surrounding whitespace ignored)."""
    s = require_str(value, field, max_len=4 * n_chars)
    if len(s) != n_chars or not _HEX.fullmatch(s):
        got = f"{len(s)} hex digits" if _HEX.fullmatch(s) else "non-hex characters"
        raise InvalidSignal(field, f"{what} must be exactly {n_chars} hex digits; got {got}")
    return s.lower()
