"""Media hashes: `pdq`, `md5`, `sha256`, `photodna` (table in docs/signal-types.md).

- `pdq`: 64 lowercase hex (the 256-bit PDQ hash), with `extra["quality"]` 0-100, required.
  Quality below 50 is refused unless the caller allows low quality. Matched by Hamming distance.
- `md5`: 32 lowercase hex. The MD5 of empty input is refused.
- `sha256`: 64 lowercase hex. The SHA-256 of empty input is refused.
- `photodna`: the 144 hash bytes as 288 lowercase hex. Also accepted: base64 of the 144 bytes
  (192 characters, standard or URL-safe alphabet), 144 comma-separated decimal bytes, or the
  raw 144 bytes.

Surrounding whitespace is ignored; hex digits may arrive in either case.
"""

from __future__ import annotations

import base64
import binascii
import re

from app.errors import InvalidSignal
from app.signals.types.base import Canonical, require_hex, require_str
from app.signals.vocab import SignalType

__all__ = [
    "PDQ_MIN_QUALITY",
    "PHOTODNA_BYTES",
    "canonical_md5",
    "canonical_pdq",
    "canonical_photodna",
    "canonical_sha256",
]

PDQ_MIN_QUALITY = 50
PHOTODNA_BYTES = 144

# Digests of the empty input: they would "match" every empty or failed upload.
_EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def canonical_pdq(value: object, quality: object, *, allow_low_quality: bool = False) -> Canonical:
    """64 lowercase hex plus `extra["quality"]`; low quality (< 50) is noise and refused."""
    v = require_hex(value, 64, "a PDQ hash")
    if quality is None:
        raise InvalidSignal(
            "quality", "required for pdq: the 0-100 quality the PDQ hasher returned with the hash"
        )
    if isinstance(quality, bool) or not isinstance(quality, int):
        raise InvalidSignal("quality", "must be an integer from 0 to 100")
    if not 0 <= quality <= 100:
        raise InvalidSignal("quality", f"must be from 0 to 100, got {quality}")
    if quality < PDQ_MIN_QUALITY and not allow_low_quality:
        raise InvalidSignal(
            "quality",
            f"{quality} is below {PDQ_MIN_QUALITY}: hashes of flat or tiny images match unrelated "
            "images; send a better source image, or enable low-quality PDQ on this node",
        )
    return Canonical(SignalType.PDQ, v, {"quality": quality})


def canonical_md5(value: object) -> Canonical:
    v = require_hex(value, 32, "an MD5 digest")
    if v == _EMPTY_MD5:
        raise InvalidSignal("value", "this is the MD5 of empty input; hash the file's bytes")
    return Canonical(SignalType.MD5, v)


def canonical_sha256(value: object) -> Canonical:
    v = require_hex(value, 64, "a SHA-256 digest")
    if v == _EMPTY_SHA256:
        raise InvalidSignal("value", "this is the SHA-256 of empty input; hash the file's bytes")
    return Canonical(SignalType.SHA256, v)


_B64 = re.compile(r"[A-Za-z0-9+/_-]{192}")
_DECIMALS = re.compile(r"\d{1,3}(\s*,\s*\d{1,3}){143}")
_PHOTODNA_FORMS = (
    f"a PhotoDNA hash must be {PHOTODNA_BYTES} bytes: {2 * PHOTODNA_BYTES} hex digits, "
    f"192 base64 characters, or {PHOTODNA_BYTES} comma-separated numbers 0-255"
)


def _photodna_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        if len(value) != PHOTODNA_BYTES:
            raise InvalidSignal("value", f"{_PHOTODNA_FORMS}; got {len(value)} raw bytes")
        return bytes(value)
    s = require_str(value, max_len=4096)
    if len(s) == 2 * PHOTODNA_BYTES:
        return bytes.fromhex(require_hex(s, 2 * PHOTODNA_BYTES, "a PhotoDNA hash"))
    if _B64.fullmatch(s):
        try:
            return base64.b64decode(s.replace("-", "+").replace("_", "/"), validate=True)
        except binascii.Error:  # pragma: no cover - the pattern already excludes bad input
            pass
    if _DECIMALS.fullmatch(s):
        numbers = [int(n) for n in s.split(",")]
        if all(n <= 255 for n in numbers):
            return bytes(numbers)
    raise InvalidSignal("value", _PHOTODNA_FORMS)


def canonical_photodna(value: object) -> Canonical:
    """The 144 bytes as 288 lowercase hex digits, whatever form they arrived in."""
    return Canonical(SignalType.PHOTODNA, _photodna_bytes(value).hex())
