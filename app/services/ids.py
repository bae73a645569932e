"""Public ids: 26-character, time-ordered, 80 random bits (ULID layout, Crockford base32)."""

from __future__ import annotations

import base64
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# RFC 4648's base32 alphabet, digit for digit, to ours: the C encoder does the bit slicing.
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_id() -> str:
    n = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    # 128 bits as 26 base32 digits: the low 26 of a 160-bit (32-digit) encoding, whose top six
    # digits are zero. One id per signal published: the digit-by-digit loop cost 8 µs of it.
    return base64.b32encode(n.to_bytes(20, "big"))[6:].translate(_FROM_RFC4648).decode()
