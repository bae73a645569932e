"""Evasion-resistant folding for keyword matching (keyword fold 2).

A keyword signal's *value* stays the readable fold 1 form (`fold_text`: NFKC + casefold,
format characters removed). Matching uses a second, lossy key computed by every node on its
own side for both the stored keyword and the probed text, so two nodes never need to agree on
it byte for byte and signals published before fold 2 keep matching (their value is unchanged;
their key is computed from it). `match_key_text(s)`:

1. NFKC;
2. every default-ignorable code point removed (Unicode DerivedCoreProperties
   Default_Ignorable_Code_Point: zero-width space/joiners, word joiner, variation selectors,
   Hangul fillers, tag characters, ...), not only category Cf;
3. canonical decomposition, then combining diacritical marks removed (the blocks "Zalgo" text
   and accent evasion use: U+0300-036F, U+0483-0489, U+1AB0-1AFF, U+1DC0-1DFF, U+20D0-20FF,
   U+FE20-FE2F), then recomposition. Marks that are letters of their script (Indic vowel signs)
   are kept;
4. each non-ASCII character replaced by its UTS #39 confusable skeleton (ICU's SpoofChecker,
   through PyICU), then `fold_text` (fold 1: NFKC + casefold, format characters removed):
   Cyrillic `\u0455\u0435\u0445\u0443` -> `sexy`, Greek omicron -> `o`, Latin alpha -> `a`.
   ASCII is left alone on purpose: UTS #39 also maps ASCII onto ASCII (`m` -> `rn`,
   `d` -> `cl`, `0` -> `O`), which would make ordinary words collide (`dog` and `clog`,
   `com` and `corn`). Digit and symbol look-alikes are the optional leetspeak fold instead;
5. repeated until stable (at most four rounds), whitespace collapsed.

`leet_fold` (optional, per query: `"leet": true`) maps `0 1 3 4 5 7 8 @ $ ! |` to
`o i e a s t b a s i l`. It is applied to both sides, so `s3xy` finds `sexy`, and it is off by
default because it also makes `4 u` read as `a u`.

Spaced letters (`s e x y`, `s.e.x.y`) are joined by `join_spaced` in the text probe.

The confusables data is ICU's; `CONFUSABLES_DATA` names the version this fold was pinned
against and `confusables_data()` the one installed. Keyword signals published under fold 2
carry `attrs["fold"] = FOLD_VERSION` so a reader knows which fold the publisher used.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

import icu

from app.signals.types.text import KEYWORD_FOLD as FOLD_VERSION
from app.signals.types.text import fold_text

__all__ = [
    "CONFUSABLES_DATA",
    "FOLD_VERSION",
    "confusables_data",
    "is_default_ignorable",
    "join_spaced",
    "leet_fold",
    "match_key_text",
]

# UTS #39 confusables as shipped in ICU 72.1 (Unicode 15.0). A test pins it: when the installed
# ICU moves, re-run the evasion corpus and bump this (matching stays local to each node, so a
# peer on another ICU version only catches a slightly different set of evasions).
CONFUSABLES_DATA: Final = "uts39 unicode-15.0 icu-72.1"

# DerivedCoreProperties.txt (Unicode 15.0), Default_Ignorable_Code_Point.
_IGNORABLE: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_IGNORABLE_RE: Final = re.compile(
    "[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _IGNORABLE) + "]"
)
_MARKS_RE: Final = re.compile(
    "[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
)
_LEET: Final = str.maketrans("0134578@$!|", "oieastbasil")
# A token of three or more single letters separated by punctuation: s.e.x, s-e-x-y, s_e_x
_DOTTED: Final = re.compile(r"\w(?:[\W_]\w){2,}")


def confusables_data() -> str:
    """The confusables data actually installed (ICU's Unicode and ICU versions)."""
    return f"uts39 unicode-{icu.UNICODE_VERSION} icu-{icu.ICU_VERSION}"


_CHECKER = icu.SpoofChecker()


def _keep(c: str) -> bool:
    # ASCII (see the module docstring) and Hangul: ICU decomposes a syllable to jamo and maps a
    # final consonant onto the initial one, which only blurs Korean words into each other.
    return c.isascii() or "\uac00" <= c <= "\ud7a3" or "\u1100" <= c <= "\u11ff"


@lru_cache(maxsize=65536)
def _skeleton_char(c: str) -> str:
    if _keep(c):
        return c
    return str(_CHECKER.getSkeleton(0, c))


def is_default_ignorable(c: str) -> bool:
    return _IGNORABLE_RE.fullmatch(c) is not None


def _round(s: str) -> str:
    # Skeletons before casefolding: the capital look-alikes (Greek capital nu, Cyrillic
    # capital dze) have
    # skeletons that casefold to the letter they imitate; their lower-case forms may not.
    s = _IGNORABLE_RE.sub("", unicodedata.normalize("NFKC", s))
    s = unicodedata.normalize("NFC", _MARKS_RE.sub("", unicodedata.normalize("NFD", s)))
    s = "".join(_skeleton_char(c) for c in s)
    return fold_text(s)


def match_key_text(s: str) -> str:
    """The fold 2 matching form of raw text `s` (idempotent; lower case, spaces collapsed)."""
    for _ in range(4):
        folded = _round(s)
        if folded == s:
            break
        s = folded
    return s


def leet_fold(s: str) -> str:
    """Digits and symbols read as letters (`s3xy` -> `sexy`); apply after `match_key_text`."""
    return s.translate(_LEET)


def join_spaced(words: Sequence[str]) -> list[str]:
    """`words` with spaced-out letters joined: runs of three or more one-character words
    (`s e x y`) become one word, and a dotted or dashed word (`s.e.x.y`) loses its separators.
    """
    out: list[str] = []
    run: list[str] = []
    changed = False

    def flush() -> None:
        nonlocal changed
        if len(run) >= 3:
            out.append("".join(run))
            changed = True
        else:
            out.extend(run)
        run.clear()

    for w in words:
        if len(w) == 1 and w.isalnum():
            run.append(w)
            continue
        flush()
        if _DOTTED.fullmatch(w):
            out.append("".join(ch for ch in w if ch.isalnum()))
            changed = True
        else:
            out.append(w)
    flush()
    return out if changed else list(words)
