"""Exact-match signal types for Signet's keyed identifiers.

Signet never shares a raw e-mail address, phone number, user name or payment id: the platform
normalises it and keys it (HMAC-SHA256 under the federation's identifier key). These types hold
that keyed value (64 lowercase hex) and match it exactly; compute the value to look up with
`signet hash` (or the same normalisation and key) and match it with `threatexchange match
text --hashes -S signet_email -- <hex>`.
"""

from __future__ import annotations

import re
import typing as t

from threatexchange.content_type.content_base import ContentType
from threatexchange.content_type.text import TextContent
from threatexchange.signal_type import signal_base

_HEX64 = re.compile(r"[0-9a-f]{64}")


class _KeyedIdentifierSignal(signal_base.SimpleSignalType, signal_base.MatchesStr):
    SIGNET_TYPE: t.ClassVar[str] = ""

    @classmethod
    def get_name(cls) -> str:
        return f"signet_{cls.SIGNET_TYPE}"

    @classmethod
    def get_content_types(cls) -> list[type[ContentType]]:
        return [TextContent]

    @classmethod
    def get_index_cls(cls) -> type[signal_base.TrivialSignalTypeIndex[t.Any]]:
        return signal_base.TrivialSignalTypeIndex

    @classmethod
    def validate_signal_str(cls, signal_str: str) -> str:
        value = signal_str.strip().lower()
        if not _HEX64.fullmatch(value):
            raise ValueError(f"{cls.get_name()} is a keyed value: 64 hex digits")
        return value

    @classmethod
    def matches_str(cls, signal: str, haystack: str) -> signal_base.SignalComparisonResult:
        return signal_base.SignalComparisonResult.from_bool_only(signal == haystack.strip().lower())

    @staticmethod
    def get_examples() -> list[str]:
        return ["0" * 64]


class SignetEmailSignal(_KeyedIdentifierSignal):
    """A keyed (HMAC-SHA256) normalised e-mail address."""

    SIGNET_TYPE = "email"


class SignetPhoneSignal(_KeyedIdentifierSignal):
    """A keyed (HMAC-SHA256) E.164 phone number."""

    SIGNET_TYPE = "phone"


class SignetUsernameSignal(_KeyedIdentifierSignal):
    """A keyed (HMAC-SHA256) normalised user name."""

    SIGNET_TYPE = "username"


class SignetPaymentSignal(_KeyedIdentifierSignal):
    """A keyed (HMAC-SHA256) payment identifier."""

    SIGNET_TYPE = "payment"


KEYED_TYPES: dict[str, type[_KeyedIdentifierSignal]] = {
    c.SIGNET_TYPE: c
    for c in (SignetEmailSignal, SignetPhoneSignal, SignetUsernameSignal, SignetPaymentSignal)
}
