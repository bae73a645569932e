"""Text types: `keyword` and `text_tlsh` (table in docs/signal-types.md).

- `keyword`: a codeword or short phrase shared on purpose (never message text), folded by
  `fold_text`: invisible format characters (Unicode category Cf: zero-width spaces and joiners,
  soft hyphens, BOM) removed; NFKC, casefold, NFKC again, repeated until stable; whitespace runs
  collapsed to one space and trimmed. Other control characters are refused. 1-200 characters
  after folding.
- `text_tlsh`: `T1` + 70 upper-case hex, the form py-tlsh prints (128 buckets, 1-byte checksum).
  The legacy form without `T1` and lower-case hex are accepted; the digest must parse. Matched by
  `tlsh_distance`.
"""

from __future__ import annotations

import re
import unicodedata

import tlsh

from app.errors import InvalidSignal
from app.signals.types.base import Canonical, require_str
from app.signals.vocab import SignalType

__all__ = [
    "KEYWORD_MAX",
    "canonical_keyword",
    "canonical_text_tlsh",
    "fold_text",
    "keyword_canonical",
    "tlsh_canonical",
    "tlsh_distance",
]

KEYWORD_MAX = 200


def fold_text(text: str) -> str:
    """Remove invisible format characters, NFKC + casefold to a fixed point, collapse spaces.

    Idempotent: `fold_text(fold_text(x)) == fold_text(x)`. Shared by keywords and usernames.
    """
    s = text
    for _ in range(4):  # NFKC and casefold can each undo the other's work in rare cases
        before = s
        s = "".join(c for c in s if unicodedata.category(c) != "Cf")
        s = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).casefold())
        s = " ".join(s.split())
        if s == before:
            break
    return s


def keyword_canonical(value: object, field: str = "value") -> str:
    s = require_str(value, field, max_len=4 * KEYWORD_MAX)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSignal(field, "contains unpaired surrogates; send valid UTF-8 text") from None
    folded = fold_text(s)
    if any(unicodedata.category(c) == "Cc" for c in folded):
        raise InvalidSignal(field, "contains control characters")
    if not folded:
        raise InvalidSignal(field, "empty after normalisation")
    if len(folded) > KEYWORD_MAX:
        raise InvalidSignal(
            field,
            f"{len(folded)} characters after normalisation; a keyword is a codeword or short "
            f"phrase of at most {KEYWORD_MAX} (use text_tlsh for longer texts)",
        )
    return folded


# Keyword fold 2 (app.signals.textfold): new keyword signals say which matching fold their
# publisher checked them under. The value itself keeps the readable fold 1 form.
KEYWORD_FOLD = "2"


def canonical_keyword(value: object) -> Canonical:
    return Canonical(SignalType.KEYWORD, keyword_canonical(value), {"fold": KEYWORD_FOLD})


_TLSH = re.compile(r"(?:[Tt]1)?([0-9A-Fa-f]{70})")


def tlsh_canonical(value: object, field: str = "value") -> str:
    s = require_str(value, field, max_len=256)
    m = _TLSH.fullmatch(s)
    if not m:
        raise InvalidSignal(
            field,
            "a TLSH digest is 'T1' followed by 70 hex digits (128 buckets, 1-byte checksum), "
            "as py-tlsh's tlsh.hash() returns; 'TNULL' means the text was too short to hash",
        )
    t = tlsh.Tlsh()
    try:
        t.fromTlshStr("T1" + m.group(1).upper())
    except ValueError:
        raise InvalidSignal(field, "not a valid TLSH digest") from None
    digest: str = t.hexdigest()
    return digest


def canonical_text_tlsh(value: object) -> Canonical:
    return Canonical(SignalType.TEXT_TLSH, tlsh_canonical(value))


def tlsh_distance(a: str, b: str) -> int:
    """TLSH distance (0 = identical, with the length term) between two digests in any form."""
    d: int = tlsh.diff(tlsh_canonical(a, "a"), tlsh_canonical(b, "b"))
    return d
