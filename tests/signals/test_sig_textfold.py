"""Keyword fold 2: evasive spellings fold onto their plain keyword; ordinary words do not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.signals.match_index import IndexedSignal, MatchIndex
from app.signals.textfold import (
    CONFUSABLES_DATA,
    confusables_data,
    join_spaced,
    leet_fold,
    match_key_text,
)
from app.signals.types import canonicalize

# Synthetic codewords (what a keyword list holds) and evasive spellings of each.
EVASIONS = {
    "cheese pizza": [
        "\u0441\u04bb\u0435\u0435\u0455\u0435 \u0440\u0456zz\u0430",  # Cyrillic look-alikes
        "CHEESE PIZZA",
        "\uff43\uff48\uff45\uff45\uff53\uff45 \uff50\uff49\uff5a\uff5a\uff41",  # fullwidth
        "che\u200dese pi\u200czza",  # zero-width joiner / non-joiner
        "ch\u0113\u0113se pi\u0336z\u0336z\u0336a",  # combining marks and a macron
        "cheese\u2060 pizza\ufe0f",  # word joiner, variation selector
    ],
    "nudes": [
        "\u039dUDES",  # Greek capital nu
        "\u03b7udes",  # Greek eta
        "n\u057ddes",  # Armenian seh
        "\U0001d427\U0001d42e\U0001d41d\U0001d41e\U0001d42c",  # mathematical bold
        "nu\u034fdes",  # combining grapheme joiner (default-ignorable, not Cf)
        "n\u0301u\u0308d\u0303e\u0300s\u0489",  # zalgo
    ],
    "hushhush": ["h\u057d\u0455hh\u057d\u0455h", "\u04bbushhush"],
}

# Ordinary words, including pairs UTS #39 would fold together if ASCII were skeletonised
# (dog/clog, com/corn, modern/rnodern) and non-English words that share letters with codewords.
_ORDINARY_TEXT = (
    "the be to of and a in that have it for not on with he as you do at this but his by from "
    "they we say her she or an will my one all would there their what so up out if about who "
    "get which go me when make can like time no just him know take people into year your good "
    "some could them see other than then now look only come its over think also back after use "
    "two how our work first well way even new want because any these give day most us dog clog "
    "com corn modern burn bum cheese pizza pie nude dude nurse dues hush shush push cheer chess "
    "piazza pizzeria nodes codes rudest lunch dinner school homework game phone video call "
    "friend family teacher music movie sport football summer winter holiday birthday party "
    "\u043f\u0438\u0446\u0446\u0430 \u0441\u044b\u0440 \u0441\u043e\u0440 "
    "\u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 caf\u00e9 na\u00efve \u00fcber "
    "stra\u00dfe \ud55c\uad6d\uc5b4 \u0928\u092e\u0938\u094d\u0924\u0947"
)
ORDINARY = _ORDINARY_TEXT.split()


@pytest.mark.parametrize(("keyword", "variant"), [(k, v) for k, vs in EVASIONS.items() for v in vs])
def test_evasion_folds_onto_its_keyword(keyword: str, variant: str) -> None:
    stored = canonicalize("keyword", keyword).value
    assert match_key_text(variant) == match_key_text(stored)


def test_ordinary_words_keep_distinct_keys() -> None:
    keys: dict[str, str] = {}
    for w in ORDINARY:
        k = match_key_text(w)
        assert keys.setdefault(k, w) == w, f"{w!r} and {keys[k]!r} fold alike"


def test_ordinary_text_does_not_match_codewords() -> None:
    index = MatchIndex()
    index.apply(
        IndexedSignal(i, "keyword", f"keyword:{k}", k, 2e9, True) for i, k in enumerate(EVASIONS)
    )
    index.apply([IndexedSignal(99, "keyword", "keyword:dog", "dog", 2e9, True)])
    words = [match_key_text(w) for w in ORDINARY if match_key_text(w) not in ("dog",)]
    words = [w for w in words if w not in ("cheese", "pizza")]
    assert index.keywords_in(join_spaced(words), 1.0) == []
    assert index.keywords_in([match_key_text("clog")], 1.0) == []
    assert index.keywords_in([match_key_text("d\u043eg")], 1.0) == [(99, "dog")]


def test_keywords_published_before_fold_2_keep_matching() -> None:
    index = MatchIndex()  # a fold 1 value, no attrs: what older nodes published
    index.apply([IndexedSignal(7, "keyword", "keyword:nudes", "nudes", 2e9, True)])
    assert index.keywords_in([match_key_text("\u03b7udes")], 1.0) == [(7, "nudes")]


def test_new_keywords_carry_the_fold_version() -> None:
    assert canonicalize("keyword", "Nudes").extra == {"fold": "2"}
    assert canonicalize("keyword", "Nudes").value == "nudes"  # readable value unchanged


def test_confusables_data_pinned() -> None:
    assert confusables_data() == CONFUSABLES_DATA


def test_spaced_letters_join() -> None:
    assert join_spaced(["hey", "n", "u", "d", "e", "s", "pls"]) == ["hey", "nudes", "pls"]
    assert join_spaced(["n.u.d.e.s", "a", "b"]) == ["nudes", "a", "b"]
    assert join_spaced(["i", "am", "a", "b"]) == ["i", "am", "a", "b"]


def test_leet_fold() -> None:
    assert leet_fold(match_key_text("NUD3$")) == leet_fold("nudes") == "nudes"
    assert leet_fold("h4sh") == "hash"


@given(st.text(max_size=40))
def test_match_key_idempotent(s: str) -> None:
    once = match_key_text(s)
    assert match_key_text(once) == once
