from datetime import timedelta

import pytest

from app.errors import InvalidSignal
from app.signals import vocab
from app.signals.vocab import (
    DEFAULT_VALIDITY,
    EXACT_TYPES,
    IDENTIFIER_TYPES,
    TLP,
    Category,
    Indicator,
    Opinion,
    SignalType,
    Verdict,
    parse_choice,
    validate_categories,
    validate_indicators,
)


def test_vocabularies_pinned() -> None:
    assert [t.value for t in SignalType] == [
        "pdq", "md5", "sha256", "photodna", "url", "domain",
        "keyword", "text_tlsh", "email", "phone", "username", "payment", "vpdq",
    ]  # fmt: skip
    assert {c.value for c in Category} == {
        "csam", "csam_distribution", "grooming", "sextortion",
        "child_trafficking", "trafficking", "ncii", "exploitation_other",
    }  # fmt: skip
    assert [o.value for o in Opinion] == ["investigation_seed", "positive", "negative"]
    assert [t.value for t in TLP] == ["red", "amber", "green", "clear"]
    assert [v.value for v in Verdict] == [
        "seen", "true_positive", "false_positive", "disputed", "appeal_overturned",
    ]  # fmt: skip
    required = {
        "age_probe", "secrecy_request", "off_platform_migration", "gift_offer",
        "image_request", "sextortion_threat", "mass_contact_minors", "ad_phone_reuse",
    }  # fmt: skip
    assert required <= {i.value for i in Indicator}
    for token in [*Category, *Indicator]:
        assert vocab.TOKEN_RE.fullmatch(token)


def test_type_sets_and_validity() -> None:
    assert {"email", "phone", "username", "payment"} == set(IDENTIFIER_TYPES)
    assert SignalType.PDQ not in EXACT_TYPES and SignalType.TEXT_TLSH not in EXACT_TYPES
    assert {"md5", "sha256", "url", "domain", "keyword"} <= set(EXACT_TYPES)
    assert IDENTIFIER_TYPES <= EXACT_TYPES
    assert set(DEFAULT_VALIDITY) == set(SignalType)
    assert DEFAULT_VALIDITY[SignalType.EMAIL] == timedelta(days=365)
    assert DEFAULT_VALIDITY[SignalType.KEYWORD] == timedelta(days=90)


def test_categories_sorted_unique() -> None:
    assert validate_categories(["sextortion", "grooming", "sextortion"]) == [
        "grooming",
        "sextortion",
    ]
    assert validate_categories(("local_extra",), frozenset({"local_extra"})) == ["local_extra"]


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ([], "categories", "at least one"),
        ("grooming", "categories", "list"),
        (["grooming", "Grooming"], "categories[1]", "did you mean 'grooming'"),
        (["grooming", 3], "categories[1]", "string"),
        (["nope"], "categories[0]", "known:"),
    ],
)
def test_categories_refused(values: object, field: str, fragment: str) -> None:
    with pytest.raises(InvalidSignal) as exc:
        validate_categories(values)
    assert exc.value.field == field
    assert fragment in exc.value.reason


def test_indicators() -> None:
    assert validate_indicators([]) == []
    assert validate_indicators(["gift_offer", "age_probe"]) == ["age_probe", "gift_offer"]
    with pytest.raises(InvalidSignal) as exc:
        validate_indicators(["age_probe", "message text"])
    assert exc.value.field == "indicators[1]"


def test_parse_choice() -> None:
    assert parse_choice(TLP, "amber", "audience.tlp") is TLP.AMBER
    with pytest.raises(InvalidSignal) as exc:
        parse_choice(TLP, "AMBER", "audience.tlp")
    assert exc.value.field == "audience.tlp"
    assert "did you mean 'amber'" in exc.value.reason
    with pytest.raises(InvalidSignal):
        parse_choice(Opinion, None, "opinion")


@pytest.mark.parametrize(
    "values, field",
    [
        ([{"a": 1}], "categories[0]"),
        ([["csam"]], "categories[0]"),
        (["csam", {"x": 1}], "categories[1]"),
        (["csam", ["grooming"]], "categories[1]"),
    ],
)
def test_unhashable_items_are_named_not_crashed_on(values: list[object], field: str) -> None:
    """A hostile peer's record (or an API item) with a list or an object among its categories
    gets the item named, never a TypeError from the fast set check."""
    with pytest.raises(InvalidSignal) as exc:
        validate_categories(values)
    assert exc.value.field == field
    with pytest.raises(InvalidSignal):
        validate_indicators([{"a": 1}])
