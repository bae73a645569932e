"""Strict base64 shared by every format here (RFC 4648 section 4, padded)."""

from __future__ import annotations

import base64
import binascii

from app.crypto.errors import MalformedError


def b64encode(data: bytes) -> str:
    """Standard padded base64."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Decode standard padded base64, refusing anything but the one canonical encoding.

    Non-canonical encodings (stray characters, non-zero padding bits) would give one
    signature several spellings, so deduplication by text and caching by text would break.
    """
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedError(what, f"not valid base64: {text[:80]!r}") from exc
    if b64encode(data) != text:
        raise MalformedError(what, f"not canonical base64: {text[:80]!r}")
    return data
