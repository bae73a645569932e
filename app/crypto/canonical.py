"""RFC 8785 JSON Canonicalization Scheme (JCS), the bytes every signature covers."""

from __future__ import annotations

import json

import rfc8785

from app.crypto.errors import MalformedError

__all__ = ["canonical_json"]


_MAX_SAFE = 2**53 - 1


def _plain(obj: object, depth: int = 0) -> bool:
    """True if `obj` uses only what `json.dumps` serialises exactly as RFC 8785 does: objects
    with ASCII keys (UTF-16 and code-point order agree there), arrays, strings, booleans,
    null and integers within ±(2**53 - 1). Floats need ECMAScript number formatting, and
    non-ASCII keys UTF-16 ordering, so those take the reference implementation."""
    if depth > 64:
        return False
    t = type(obj)
    if t is str or obj is None or t is bool:
        return True
    if t is int:
        return -_MAX_SAFE <= obj <= _MAX_SAFE  # type: ignore[operator]
    if t is dict:
        for k, v in obj.items():  # type: ignore[attr-defined]
            if type(k) is not str or not k.isascii() or not _plain(v, depth + 1):
                return False
        return True
    if t is list:
        return all(_plain(v, depth + 1) for v in obj)  # type: ignore[attr-defined]
    return False


def canonical_json(obj: object) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Raises `MalformedError` for values JSON cannot carry exactly (NaN, infinities, integers
    beyond ±2**53, non-string keys, non-JSON types): signing them would mean signing bytes
    another implementation cannot reproduce.

    Fast path: records and log entries are plain JSON (see `_plain`), for which the standard
    library's sorted, compact, non-ASCII-preserving output is byte-for-byte RFC 8785 (same
    escapes: `\\b \\f \\n \\r \\t \\" \\\\` and lowercase `\\u00xx` for other controls), at
    about a tenth of the cost. A lone surrogate cannot be UTF-8 encoded and falls back.
    """
    if _plain(obj):
        try:
            return json.dumps(
                obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # lone surrogates: let the reference implementation refuse them
    try:
        return rfc8785.dumps(obj)  # type: ignore[arg-type]
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise MalformedError("json", f"cannot canonicalise: {exc}") from exc
