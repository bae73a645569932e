"""`validate.SharedChecks`: the per-page memo of the checks a page's signal records share
(vocabulary, times, audience) gives exactly the answer of the full check, for every record,
whatever came before it in the page (sync.py applies each page with one memo)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.federation import validate
from tests.signal_bodies import signal_body


def _record(**fields: Any) -> dict[str, Any]:
    body = signal_body(
        id="01shared0000000000000000001",
        categories=["csam", "grooming"],
        audience={"tlp": "clear", "peers": [], "hops": 1},
        origin="b.test",
        key_id="00000000",
        signature="AAAA",
    )
    body.update(fields)
    return body


# Each differs from the good record in one shared field, most in ways a cache keyed on Python
# equality would confuse with the good one (1 == 1.0 == True, key order, list order).
VARIANTS: list[dict[str, Any]] = [
    {},
    {"confidence": True},
    {"confidence": 50.0},
    {"confidence": 101},
    {"confidence": 2**70},
    {"reviewed": 0},
    {"reviewed": True},
    {"opinion": "bogus"},
    {"categories": ["grooming", "csam"]},
    {"categories": ["csam", "csam", "grooming"]},
    {"categories": ["csam"]},
    {"categories": ["made_up"]},
    {"categories": [1]},
    {"categories": "csam"},
    {"indicators": ["made up indicator"]},
    {"indicators": None},
    {"valid_from": "2026-01-01T00:00:00+00:00"},
    {"valid_from": "2026-01-01T00:00:00"},
    {"valid_until": "2026-01-01T00:00:00Z"},
    {"valid_until": "2090-01-01T00:00:00Z"},
    {"valid_until": float("inf")},
    {"valid_until": None},
    {"audience": {"tlp": "clear", "peers": [], "hops": True}},
    {"audience": {"tlp": "clear", "peers": [], "hops": 1.0}},
    {"audience": {"tlp": "clear", "peers": [], "hops": 17}},
    {"audience": {"hops": 1, "peers": [], "tlp": "clear"}},
    {"audience": {"tlp": "amber", "peers": [], "hops": 1}},
    {"audience": {"tlp": "clear", "peers": ["z.test", "a.test"], "hops": 1}},
    {"audience": {"tlp": "clear", "peers": ["a.test", "z.test"], "hops": 1}},
    {"audience": {"tlp": "clear", "peers": [], "hops": 1, "extra": 1}},
    {"audience": {"tlp": "clear", "peers": [], "hops": 1, "exclude": ["b.x", "a.x"]}},
    {"audience": None},
    {"value": "A" * 32},
    {"v": 2},
    {"extra": "field"},
]


def _outcome(record: dict[str, Any], memo: validate.SharedChecks | None) -> Any:
    try:
        checked = validate.check_signal(record, max_bytes=None, memo=memo)
    except validate.RecordInvalid as exc:
        return ("refused", exc.field, exc.reason)
    return ("ok", checked)


@pytest.mark.parametrize("extra", [frozenset(), frozenset({"made_up"})])
def test_memo_answers_as_the_full_check_whatever_came_before(extra: frozenset[str]) -> None:
    records = [_record(**v) for v in VARIANTS]
    expected = []
    for r in records:
        try:
            expected.append(
                ("ok", validate.check_signal(r, max_bytes=None, extra_categories=extra))
            )
        except validate.RecordInvalid as exc:
            expected.append(("refused", exc.field, exc.reason))
    assert sum(e[0] == "ok" for e in expected) >= 5  # the set has passing and failing records
    assert sum(e[0] == "refused" for e in expected) >= 20
    # Every record after every other one (and after itself), on one memo per ordering.
    for first in range(len(records)):
        memo = validate.SharedChecks()
        order = [first, *range(len(records)), first]
        for i in order:
            try:
                got: Any = (
                    "ok",
                    validate.check_signal(
                        records[i], max_bytes=None, extra_categories=extra, memo=memo
                    ),
                )
            except validate.RecordInvalid as exc:
                got = ("refused", exc.field, exc.reason)
            assert got == expected[i], (VARIANTS[first], VARIANTS[i])


def test_memo_keeps_only_what_passed_and_hands_out_copies() -> None:
    memo = validate.SharedChecks()
    for v in VARIANTS:
        _outcome(_record(**v), memo)
    passing = [v for v in VARIANTS if _outcome(_record(**v), None)[0] == "ok"]
    # One entry per distinct passing combination of shared fields (value-only variants share).
    assert 0 < len(memo._passed) <= len(passing)
    a = validate.check_signal(_record(), max_bytes=None, memo=memo)
    a.categories.append("mutated")
    b = validate.check_signal(_record(), max_bytes=None, memo=memo)
    assert b.categories == ["csam", "grooming"]


def test_memo_does_not_mix_category_sets() -> None:
    """A combination that passed with a node's extra categories is not reused without them."""
    memo = validate.SharedChecks()
    extra = frozenset({"made_up"})
    r = _record(categories=["csam", "made_up"])
    assert validate.check_signal(r, max_bytes=None, extra_categories=extra, memo=memo)
    with pytest.raises(validate.RecordInvalid) as exc:
        validate.check_signal(r, max_bytes=None, memo=memo)
    assert exc.value.field.startswith("categories")


def test_a_record_is_not_changed_by_the_check() -> None:
    r = _record()
    before = copy.deepcopy(r)
    memo = validate.SharedChecks()
    validate.check_signal(r, max_bytes=None, memo=memo)
    validate.check_signal(r, max_bytes=None, memo=memo)
    assert r == before
