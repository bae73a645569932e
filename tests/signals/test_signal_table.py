"""The columnar signal table (app/signals/signal_table.py) and the match index's use of it: what
a hit answers must be exactly what the per-signal `public` dict it replaced held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.schemas import MatchHit
from app.signals.match_index import IndexedSignal, MatchIndex, match_key
from app.signals.signal_table import SignalTable, from_micros, to_micros

UNTIL = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

uids = st.one_of(
    st.text("0123456789abcdefghjkmnpqrstvwxyz", min_size=26, max_size=26),  # the node's own
    st.text(min_size=0, max_size=64),  # a peer's: longer, non-ASCII, empty, trailing NULs
)
whens = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2300, 1, 1), timezones=st.just(UTC)
)
publics = st.fixed_dictionaries(
    {
        "id": uids,
        "origin": st.sampled_from(["a.example", "b.example"]),
        "type": st.sampled_from(["pdq", "md5", "keyword"]),
        "categories": st.lists(st.sampled_from(["csam", "grooming", "ncii"]), max_size=3),
        "indicators": st.lists(st.sampled_from(["off_platform_migration", "x"]), max_size=2),
        "opinion": st.sampled_from(["investigation_seed", "positive", "negative"]),
        "confidence": st.integers(0, 100),
        "reviewed": st.booleans(),
        "valid_until": whens,
        "feedback_status": st.sampled_from(["none", "confirmed", "disputed"]),
    }
)
rows = st.integers(0, 5000)  # past the first size, so the columns grow
ops = st.one_of(
    st.tuples(st.just("put"), rows, publics),
    st.tuples(st.just("put_many"), st.dictionaries(rows, publics, max_size=20)),
    st.tuples(st.just("remove"), rows),
    st.tuples(st.just("update"), rows, st.sampled_from(["none", "confirmed", "disputed"])),
)


def _put(table: SignalTable, row: int, public: dict[str, Any]) -> None:
    table.put(row, public["id"], to_micros(public["valid_until"]), table.intern_public(public))


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=60), whens)
def test_table_behaves_like_a_dict_of_public_answers(
    steps: list[tuple[Any, ...]], now: datetime
) -> None:
    table = SignalTable()
    model: dict[int, dict[str, Any]] = {}
    for op, *args in steps:
        if op == "put":
            row, public = args
            _put(table, row, public)
            model[row] = dict(public)
        elif op == "put_many":
            (batch,) = args
            ids = np.array(list(batch), dtype=np.int64)
            table.put_many(
                ids,
                [p["id"] for p in batch.values()],
                np.array([to_micros(p["valid_until"]) for p in batch.values()], dtype=np.int64),
                np.array([table.intern_public(p) for p in batch.values()], dtype=np.int32),
            )
            model.update((r, dict(p)) for r, p in batch.items())
        elif op == "remove":
            (row,) = args
            gone = table.remove(row)
            assert (gone is None) == (row not in model)
            model.pop(row, None)
        else:
            row, status = args
            table.update(row, feedback_status=status)
            if row in model:
                model[row]["feedback_status"] = status
        assert len(table) == len(model)
    t = now.timestamp()
    for row in {*model, *(a[1] for a in steps if isinstance(a[1], int)), 0, 6000, -1}:
        assert table.public(row) == model.get(row)
        # Compared in microseconds (float seconds differ only below one).
        live = row in model and to_micros(model[row]["valid_until"]) > t * 1e6
        assert table.live(row, t) == live
    probe = np.array(sorted({*model, 0, 4999, 9999}), dtype=np.int64)
    assert table.live_mask(probe, t).tolist() == [table.live(int(r), t) for r in probe]


@given(whens)
def test_valid_until_comes_back_as_the_same_datetime(when: datetime) -> None:
    back = from_micros(to_micros(when))
    assert back == when and back.tzinfo is UTC and back.isoformat() == when.isoformat()


def _public(uid: str, type_: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": uid,
        "origin": "test.example",
        "type": type_,
        "categories": ["csam"],
        "indicators": [],
        "opinion": "investigation_seed",
        "confidence": 50,
        "reviewed": False,
        "valid_until": UNTIL,
        "feedback_status": "none",
        **kw,
    }


def _signal(row: int, type_: str, value: str, *, active: bool = True, **kw: Any) -> IndexedSignal:
    public = _public(f"uid{row:023d}", type_, **kw)
    return IndexedSignal(
        row_id=row,
        type=type_,
        match_key=match_key(type_, value),
        value=value,
        valid_until=public["valid_until"].timestamp(),
        active=active,
        public=public,
        seq=row,
        subdomains=type_ == "domain",
    )


def _code(i: int) -> str:
    return f"{i:064x}"


def test_signals_sharing_fields_share_one_profile_and_feedback_moves_a_row() -> None:
    index = MatchIndex()
    index.load([_signal(i, "pdq", _code(i)) for i in range(1, 1001)], seq=1000)
    assert index.stats()["profiles"] == 1 and len(index) == 1000
    index.update_public(7, feedback_status="confirmed")
    index.update_public(8, feedback_status="confirmed")
    assert index.stats()["profiles"] == 2
    assert index.public(7) == _public(f"uid{7:023d}", "pdq", feedback_status="confirmed")
    assert index.public(9) == _public(f"uid{9:023d}", "pdq")
    index.update_public(7, feedback_status="none")  # back to the shared profile
    assert index.public(7) == _public(f"uid{7:023d}", "pdq")
    assert index.stats()["profiles"] == 2
    index.update_public(5000, feedback_status="confirmed")  # not indexed: nothing to do
    assert index.public(5000) is None and len(index) == 1000


def test_retraction_and_expiry_at_query_time() -> None:
    index = MatchIndex()
    soon = datetime(2030, 1, 1, tzinfo=UTC)
    index.load(
        [
            _signal(1, "pdq", _code(1)),
            _signal(2, "pdq", _code(2), valid_until=soon),
            _signal(3, "md5", "a" * 32),
            _signal(4, "md5", "b" * 32, valid_until=soon),
        ]
    )
    codes = np.frombuffer(bytes.fromhex(_code(1) + _code(2)), dtype=np.uint8).reshape(-1, 32)
    before, after = (soon - timedelta(seconds=1)).timestamp(), soon.timestamp()
    assert index.pdq(codes, 0, before) == [[(1, 0)], [(2, 0)]]
    assert index.pdq(codes, 0, after) == [[(1, 0)], []]  # expired: no longer a hit
    assert index.exact(match_key("md5", "b" * 32), before) == [4]
    assert index.exact(match_key("md5", "b" * 32), after) == []
    assert index.public(2) is not None  # still indexed until the database says otherwise
    index.apply(
        [_signal(1, "pdq", _code(1), active=False), _signal(3, "md5", "a" * 32, active=False)]
    )
    assert index.pdq(codes, 0, before) == [[], [(2, 0)]]
    assert index.exact(match_key("md5", "a" * 32), before) == []
    assert index.public(1) is None and index.public(3) is None and len(index) == 2
    # A wide PDQ search (more hits than the one-by-one check takes) sees the same liveness.
    index.apply([_signal(r, "pdq", _code(r)) for r in range(10, 30)])
    index.apply([_signal(12, "pdq", _code(12), active=False)])
    wide = index.pdq(codes[:1], 8, before)[0]
    assert sorted(r for r, _ in wide) == [2] + [r for r in range(10, 30) if r != 12]


def test_public_answers_are_what_the_signals_carried_for_every_type() -> None:
    """The answer a hit builds from the table serialises to the same bytes as the `public` dict
    the index held per signal before."""
    signals = [
        _signal(1, "pdq", _code(1), categories=["csam", "grooming"], confidence=90),
        _signal(2, "md5", "c" * 32, reviewed=True, opinion="positive"),
        _signal(3, "keyword", "snap me", indicators=["off_platform_migration"]),
        _signal(4, "domain", "bad.example", feedback_status="disputed"),
        _signal(5, "text_tlsh", "T1" + "A" * 70),
        _signal(6, "md5", "d" * 32, id="x" * 64),  # a peer's long uid
        _signal(7, "md5", "e" * 32, id="ünïcode-uid"),
        _signal(8, "md5", "f" * 32, valid_until=datetime(2030, 2, 3, tzinfo=UTC)),  # no µs
    ]
    loaded, applied = MatchIndex(), MatchIndex()
    loaded.load(signals)
    applied.apply(signals)
    for s in signals:
        for index in (loaded, applied):
            got = index.public(s.row_id)
            assert got == s.public
            assert MatchHit(**got, distance=3).model_dump_json() == (
                MatchHit(**s.public, distance=3).model_dump_json()
            )
    for index in (loaded, applied):
        assert index.domains_over("x.bad.example", 0) == [(4, "bad.example")]
        assert index.keywords_in(["snap", "me"], 0) == [(3, "snap me")]
        index.apply([_signal(4, "domain", "bad.example", active=False)])
        index.apply([_signal(3, "keyword", "snap me", active=False)])
        assert index.domains_over("x.bad.example", 0) == []
        assert index.keywords_in(["snap", "me"], 0) == []
        assert index.stats()["exact_keys"] == 4


@given(st.integers(0, 2**128 - 1))
def test_signet_ids_are_kept_in_16_bytes(n: int) -> None:
    from app.ids import _SHIFTS, PAIRS, new_id

    table = SignalTable()
    uid = "".join(PAIRS[(n >> s) & 1023] for s in _SHIFTS)
    table.put(3, uid, 0, table.intern_public({}))
    table.put_many(
        np.array([4, 5], dtype=np.int64),
        [uid, new_id()],
        np.zeros(2, dtype=np.int64),
        np.zeros(2, dtype=np.int32),
    )
    assert table.uid(3) == table.uid(4) == uid
    assert not table._other_uids  # no side dict for a Signet id
