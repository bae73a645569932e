"""Sync page and notify formats: round trips; a peer's garbage only raises MalformedPage."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.federation.errors import MalformedPage
from app.federation.pages import MAX_PAGE_RECORDS, Notify, RecordEnvelope, RecordsPage

RECORD = {
    "origin": "ngo.example",
    "key_id": "ngo.example+abcd1234",
    "id": "r1",
    "audience": {"tlp": "green", "hops": 1},
    "signature": "c2ln",
}
CHECKPOINT = "ngo.example/log\n3\nAAAA\n\n— ngo.example abcd\n"


def page(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "records": [{"hops": 1, "record": RECORD}],
        "next": 7,
        "checkpoint": CHECKPOINT,
        "has_more": False,
    }
    return {**base, **over}


def test_round_trip() -> None:
    p = RecordsPage([RecordEnvelope(RECORD, 1)], 7, CHECKPOINT, False)
    assert RecordsPage.from_json(p.to_json()) == p
    assert RecordsPage.from_json(p.to_json().encode()) == p
    assert json.loads(p.to_json()) == page()
    empty = RecordsPage([], 0, CHECKPOINT, False)
    assert RecordsPage.from_json(empty.to_json()) == empty


@pytest.mark.parametrize(
    "body",
    [
        page(records={}),
        page(records=[RECORD]),
        page(records=[{"hops": 0, "record": RECORD}]),
        page(records=[{"hops": True, "record": RECORD}]),
        page(records=[{"hops": 1, "record": RECORD, "x": 1}]),
        page(records=[{"hops": 1, "record": {**RECORD, "origin": 5}}]),
        page(records=[{"hops": 1, "record": {**RECORD, "signature": ""}}]),
        page(records=[{"hops": 1, "record": {**RECORD, "key_id": None}}]),
        page(records=[{"hops": -3, "record": RECORD}]),
        page(records=[{"hops": 1, "record": {k: v for k, v in RECORD.items() if k != "key_id"}}]),
        page(records=[{"hops": 1, "record": "x"}]),
        page(next=-1),
        page(next="7"),
        page(next=7.0),
        page(checkpoint=""),
        page(checkpoint=3),
        page(has_more=1),
        page(has_more=True, records=[]),
        page(extra=1),
        {k: v for k, v in page().items() if k != "next"},
        [],
        page(records=[{"hops": 1, "record": RECORD}] * (MAX_PAGE_RECORDS + 1)),
    ],
)
def test_wrong_shapes(body: Any) -> None:
    with pytest.raises(MalformedPage):
        RecordsPage.from_json(json.dumps(body))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "null",
        '{"next": 1, "next": 2}',
        json.dumps(page()).replace('"next": 7', '"next": NaN'),
        json.dumps(page()).replace('"next": 7', '"next": Infinity'),
        "[" * 100_000 + "]" * 100_000,
        b"\xff\xfe{",
        "1" * 5000,
    ],
)
def test_bad_json(text: str | bytes) -> None:
    with pytest.raises(MalformedPage):
        RecordsPage.from_json(text)


def test_duplicate_keys_inside_records_are_refused() -> None:
    text = json.dumps(page()).replace('"id": "r1"', '"id": "r1", "id": "r2"')
    with pytest.raises(MalformedPage):
        RecordsPage.from_json(text)


def test_check_progress() -> None:
    p = RecordsPage([RecordEnvelope(RECORD, 1)], 7, CHECKPOINT, False)
    p.check_progress(3)
    with pytest.raises(MalformedPage):
        p.check_progress(7)
    with pytest.raises(MalformedPage):
        p.check_progress(9)
    RecordsPage([], 7, CHECKPOINT, False).check_progress(7)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.binary(max_size=80),
        JSON.map(json.dumps),
        st.fixed_dictionaries(
            {"records": JSON, "next": JSON, "checkpoint": JSON, "has_more": JSON}
        ).map(json.dumps),
        st.fixed_dictionaries(
            {"records": st.lists(st.fixed_dictionaries({"hops": JSON, "record": JSON}))}
        ).map(lambda d: json.dumps({**page(), **d})),
    )
)
def test_garbage_pages_raise_only_malformed_page(data: str | bytes) -> None:
    with contextlib.suppress(MalformedPage):
        RecordsPage.from_json(data)


def test_notify_round_trip_and_checks() -> None:
    n = Notify("ngo.example", 3, CHECKPOINT)
    assert Notify.from_json(n.to_json()) == n
    assert json.loads(n.to_json()) == {"origin": "ngo.example", "size": 3, "checkpoint": CHECKPOINT}
    for bad in [
        {"origin": "NGO.example", "size": 3, "checkpoint": CHECKPOINT},
        {"origin": "ngo.example", "size": 4, "checkpoint": CHECKPOINT},
        {"origin": "ngo.example", "size": -1, "checkpoint": CHECKPOINT},
        {"origin": "ngo.example", "size": 3},
        {"origin": "ngo.example", "size": 3, "checkpoint": "x"},
        {"origin": "ngo.example", "size": 3, "checkpoint": CHECKPOINT, "more": 1},
    ]:
        with pytest.raises(MalformedPage):
            Notify.from_json(json.dumps(bad))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=80), JSON.map(json.dumps)))
def test_garbage_notify_raises_only_malformed_page(data: str) -> None:
    with contextlib.suppress(MalformedPage):
        Notify.from_json(data)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(
    "text",
    [
        # Compact, as pages are written: orjson parses these, so they must still be refused.
        '{"next":1,"next":2}',
        _compact(page()).replace('"id":"r1"', '"id":"r1","id":"r2"'),
        _compact(page()).replace('"id":"r1"', '"id":"r1","id":"r1"'),
        _compact(page()).replace('"next":7', '"next":NaN'),
        _compact(page()).replace('"next":7', '"next":-Infinity'),
        _compact(page()).replace('"hops":1', '"hops":1,"hops":1'),
    ],
)
def test_compact_pages_are_as_strictly_parsed(text: str) -> None:
    for data in (text, text.encode()):
        with pytest.raises(MalformedPage):
            RecordsPage.from_json(data)


def _strict(data: str | bytes) -> Any:
    from app.federation.pages import _reject_constant, _unique_object

    return json.loads(data, object_pairs_hook=_unique_object, parse_constant=_reject_constant)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(_values, st.sampled_from(["compact", "spaced", "ascii", "duplicate"]))
def test_parsed_as_the_strict_parser_parses(value: Any, spelling: str) -> None:
    """`pages._load` (orjson when the text is exactly orjson's encoding of its value, the
    strict parser otherwise) gives the strict parser's value, or refuses what it refuses."""
    from app.federation.pages import _load

    body = {"v": value}
    if spelling == "compact":
        text = _compact(body)
    elif spelling == "spaced":
        text = json.dumps(body, ensure_ascii=False)
    elif spelling == "ascii":
        text = json.dumps(body, separators=(",", ":"))
    else:
        text = _compact(body)[:-1] + ',"v":' + _compact(value) + "}"
    for data in (text, text.encode("utf-8", "surrogatepass")):
        try:
            expected = _strict(data)
        except (ValueError, RecursionError, MalformedPage):
            with pytest.raises(MalformedPage):
                _load(data, 10**9)
            continue
        got = _load(data, 10**9)
        assert got == expected
        assert _compact(got) == _compact(expected)  # same key order, same types (1 vs 1.0)


def test_written_pages_take_orjson() -> None:
    from app.federation.pages import _NOT_COMPACT, _load_compact

    p = RecordsPage.from_json(_compact(page()))
    assert _load_compact(p.to_json()) is not _NOT_COMPACT
    assert _load_compact(p.to_json().encode()) is not _NOT_COMPACT
