"""RFC 8785 JSON Canonicalization Scheme (JCS), the bytes every signature covers."""

from __future__ import annotations

import json
import re

import orjson
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

    Fast path (records and log entries, on every signature and log append): orjson with sorted
    keys gives RFC 8785's bytes for plain JSON — same escapes (`\\b \\f \\n \\r \\t`,
    lowercase `\\u00xx` for other controls, everything else raw UTF-8), and key order by code
    point, which equals UTF-16 order unless a supplementary-plane character is present. So its
    output is used only when it provably holds no float (no `.`/`e` in a number, no `null`,
    which is how orjson writes NaN), no integer beyond ±2**53 (refused by the strict-integer
    option), only string keys (orjson refuses others), no non-JSON type (refused via
    `default`) and no supplementary-plane character. Anything else takes the reference
    implementation, whose answer (bytes or refusal) is authoritative.
    """
    try:
        out = orjson.dumps(obj, default=_not_json, option=_ORJSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        out = None
    if out is not None and _fast_output_is_exact(out):
        return out
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


_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# A number with a fraction or exponent (a float), or `null` (how orjson writes NaN and the
# infinities, besides genuine nulls), as a whole value: after `:`, `,` or `[` and before `,`,
# `]` or `}`. The same bytes inside a string (say "a:1.5,b") only send the value down the
# slower exact paths; a timestamp such as "00:00:00.5Z" does not match.
_NOT_EXACT = re.compile(
    rb"[:,\[](?:-?[0-9]+(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)|null)[,\]}]"
)
_SUPPLEMENTARY = re.compile(rb"[\xf0-\xf4]")

# The same test without the regex, which scans the whole output in Python's regex engine
# (~3.5 us for a 500-byte record, more than orjson's encoding): delete every digit and `-`, and
# turn `,` and `[` into `:` and `.`, `e`, `E` and `n` into `#`. A value that follows `:`, `,` or
# `[` then begins with what follows its sign and digits, so a float (`-?digits` then `.`, `e` or
# `E`) and a null both leave `:#`, one substring search (C). Strings that happen to hold such
# bytes only take the slower exact paths, as with the regex. Every value the regex finds leaves
# the marker (tests/crypto/test_canonical_fast.py checks that the two agree).
_MARK = bytes.maketrans(b",[.eEn", b"::####")
_MARK_DELETE = b"-0123456789"


def _not_json(value: object) -> object:
    raise TypeError(f"not a JSON type: {type(value).__name__}")


def _fast_output_is_exact(out: bytes) -> bool:
    if out[:1] not in (b"{", b"["):  # a bare scalar: not worth a fast path
        return False
    if not out.isascii() and _SUPPLEMENTARY.search(out):
        return False
    return b":#" not in out.translate(_MARK, _MARK_DELETE)


def _fast_output_is_exact_by_regex(out: bytes) -> bool:
    """The test `_fast_output_is_exact` makes, as a regex: kept as its specification (tests
    compare the two)."""
    if out[:1] not in (b"{", b"["):
        return False
    if not out.isascii() and _SUPPLEMENTARY.search(out):
        return False
    return _NOT_EXACT.search(out) is None
