"""Identifier types: `email`, `phone`, `username`, `payment` - keyed hashes only.

The value is 64 lowercase hex: HMAC-SHA256 under a federation identifier key of
`type + ":" + normalized` (construction and normalisation in `app.signals.identifiers`), with
`extra["key_id"]` (required, `[a-z0-9][a-z0-9._-]{0,63}`). Anything else is refused as a possible
raw identifier.

The node cannot check that a 64-hex value was keyed rather than, say, a plain SHA-256; it can
only refuse what is visibly raw. The raw value is never echoed: error messages end up in logs
and responses.
"""

from __future__ import annotations

import re

from app.errors import InvalidSignal
from app.signals.types.base import Canonical
from app.signals.vocab import IDENTIFIER_TYPES, SignalType

__all__ = ["KEY_ID_RE", "canonical_identifier"]

KEY_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_KEYED = re.compile(r"[0-9a-fA-F]{64}")

_RAW_NAMES = {
    SignalType.EMAIL: ("raw email addresses", "<address>"),
    SignalType.PHONE: ("raw phone numbers", "<number>"),
    SignalType.USERNAME: ("raw usernames", "<username>"),
    SignalType.PAYMENT: ("raw payment identifiers", "<identifier>"),
}


def _raw_refusal(t: SignalType) -> str:
    what, arg = _RAW_NAMES[t]
    return (
        f"{what} are never accepted: the value must be the 64-hex HMAC-SHA256 of the normalised "
        f"{t.value}; hash it on your side with `signet identifier hash --type {t.value} {arg}` "
        f"or app.signals.identifiers.hash_identifier(...)"
    )


def canonical_identifier(type: SignalType, value: object, key_id: object) -> Canonical:
    """A keyed identifier hash, lowercased, with its `key_id`. Never echoes `value`."""
    if type not in IDENTIFIER_TYPES:
        raise InvalidSignal("type", f"'{type}' is not an identifier type")
    if not isinstance(value, str):
        raise InvalidSignal("value", _raw_refusal(type))
    v = value.strip()
    if not _KEYED.fullmatch(v):
        # Whatever it is (an address, a +number, an @handle, a short digest), it is not a keyed
        # hash, and it may be a raw identifier: say how to fix it, never what we received.
        raise InvalidSignal("value", _raw_refusal(type))
    if key_id is None:
        raise InvalidSignal(
            "key_id",
            "required for identifier signals: the id of the federation identifier key "
            "the value was keyed with",
        )
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise InvalidSignal("key_id", "must match [a-z0-9][a-z0-9._-]{0,63}")
    return Canonical(type, v.lower(), {"key_id": key_id})
