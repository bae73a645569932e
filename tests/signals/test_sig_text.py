import random

import pytest
import tlsh
from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidSignal
from app.signals.types import canonicalize, tlsh_distance
from app.signals.types.text import fold_text, keyword_canonical


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("  Cheese  Pizza ", "cheese pizza"),
        ("\uff23\uff28\uff25\uff25\uff33\uff25\tpizza", "cheese pizza"),
        ("che\u200bese pi\u00adzza", "cheese pizza"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("\U0001f355", "\U0001f355"),
    ],
)
def test_keyword(raw: str, want: str) -> None:
    assert canonicalize("keyword", raw).value == want


@pytest.mark.parametrize("bad", ["", "   ", "\u200b", "a" * 201, "a\x00b", 5, "\ud800"])
def test_keyword_refused(bad: object) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("keyword", bad)
    assert exc.value.field == "value"


@given(st.text(max_size=60))
def test_fold_text_idempotent(s: str) -> None:
    once = fold_text(s)
    assert fold_text(once) == once


@given(st.text(min_size=1, max_size=60))
def test_keyword_idempotent(s: str) -> None:
    try:
        once = keyword_canonical(s)
    except InvalidSignal:
        return
    assert keyword_canonical(once) == once


def _text(seed: int, n: int = 400) -> bytes:
    rng = random.Random(seed)
    words = ["meet", "secret", "gift", "photo", "app", "hello", "friend", "send", "now", "later"]
    return " ".join(rng.choice(words) + str(rng.randrange(50)) for _ in range(n)).encode()


def test_text_tlsh_forms() -> None:
    digest = tlsh.hash(_text(1))
    assert digest.startswith("T1") and len(digest) == 72
    for form in (digest, digest.lower(), digest[2:], digest[2:].lower(), f" {digest} "):
        assert canonicalize("text_tlsh", form).value == digest


@pytest.mark.parametrize("bad", ["TNULL", "T1" + "0" * 69, "T1" + "G" * 70, "T2" + "0" * 70, 7])
def test_text_tlsh_refused(bad: object) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("text_tlsh", bad)
    assert exc.value.field == "value"


def test_tlsh_distance() -> None:
    a, b = tlsh.hash(_text(1)), tlsh.hash(_text(2))
    assert tlsh_distance(a, a) == 0
    assert tlsh_distance(a, b[2:].lower()) == tlsh.diff(a, b) > 0
    with pytest.raises(InvalidSignal) as exc:
        tlsh_distance(a, "nope")
    assert exc.value.field == "b"
