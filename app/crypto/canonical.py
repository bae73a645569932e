"""RFC 8785 JSON Canonicalization Scheme (JCS), the bytes every signature covers."""

from __future__ import annotations

import rfc8785

from app.crypto.errors import MalformedError

__all__ = ["canonical_json"]


def canonical_json(obj: object) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Raises `MalformedError` for values JSON cannot carry exactly (NaN, infinities, integers
    beyond ±2**53, non-string keys, non-JSON types): signing them would mean signing bytes
    another implementation cannot reproduce.
    """
    try:
        return rfc8785.dumps(obj)  # type: ignore[arg-type]
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise MalformedError("json", f"cannot canonicalise: {exc}") from exc
