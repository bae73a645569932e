"""Issue 15: an open signal that creates or replaces its signal row gets no received_record row
(the signal row is its receipt), and the dedupe of pulled records stays exact: re-sent pages,
purges, older versions, signals held retracted, forged copies. Receiver on both engines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from app.crypto.canonical import canonical_json
from app.crypto.keys import NodeKey
from app.crypto.records import sign_record
from app.federation.pages import RecordEnvelope, RecordsPage
from app.services import records, sync
from app.storage import log as log_store
from app.storage import peers as peer_store
from app.storage import repos
from app.storage.models import ReceivedRecordRow, SignalRow
from app.storage.types import utcnow
from tests.federation_int.conftest import TNode, mesh
from tests.signal_bodies import signal_body

OPEN = {"tlp": "green", "peers": [], "hops": 1}
AMBER = {"tlp": "amber", "peers": ["a.test"], "hops": 1}


def _signal(key: NodeKey, n: int, version: int = 1, audience: Any = OPEN) -> dict[str, Any]:
    body = signal_body(
        id=f"01received{n:017d}",
        version=version,
        value=f"{n:024x}{version:08x}",
        audience=audience,
    )
    return sign_record(body, key, "b.test")


def _retraction(b: TNode, signal: dict[str, Any]) -> dict[str, Any]:
    body = records.retraction_body(
        signal_origin="b.test",
        signal_uid=signal["id"],
        version=signal["version"],
        reason="withdrawn",
        at=utcnow(),
    )
    return records.sign(b.node, body)


def _apply(receiver: TNode, recs: list[dict[str, Any]]) -> sync.ApplyResult:
    """Apply a page b could have served, at the receiver's cursor (a re-sent page is a new
    page as far as the cursor goes: only the records repeat)."""
    with receiver.node.db.read() as session:
        row = peer_store.get_peer(session, "b.test")
        assert row is not None
        after = row.cursor
    page = RecordsPage([RecordEnvelope(r, 1) for r in recs], after + 1, "", False)
    result = sync.apply_page(receiver.node, "b.test", after, page)
    assert not result.stale
    return result


def _counts(result: sync.ApplyResult) -> tuple[int, int, int]:
    return (result.applied, result.duplicate, result.refused)


def _log_size(node: TNode) -> int:
    with node.node.db.read() as session:
        return log_store.log_size(session)


def _received_rows(node: TNode) -> dict[tuple[str, str, int], ReceivedRecordRow]:
    with node.node.db.read() as session:
        rows = session.execute(select(ReceivedRecordRow)).scalars().all()
        return {(r.kind, r.rid, r.version): r for r in rows}


def _signals(node: TNode) -> dict[str, SignalRow]:
    with node.node.db.read() as session:
        return {r.uid: r for r in session.execute(select(SignalRow)).scalars().all()}


def _purge(node: TNode) -> int:
    with node.node.db.write() as session:
        return repos.purge_before(session, utcnow() + timedelta(days=1))


def _digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


def _received_index(node: TNode, record: dict[str, Any]) -> int:
    """The log index of the open `received` entry naming this record."""
    digest = _digest(record)
    with node.node.db.read() as session:
        rows = log_store.entries(session, 0, log_store.log_size(session))
    found = [
        r.idx for r in rows if r.kind == "received" and json.loads(r.data).get("digest") == digest
    ]
    assert len(found) == 1, found
    return found[0]


def test_a_page_applied_twice_is_all_duplicates_and_open_signals_have_no_received_row(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")  # a, the receiver, runs on the db_url engine
    mesh(a, b)
    page = [_signal(b.node.key, 1), _signal(b.node.key, 2), _signal(b.node.key, 3, audience=AMBER)]

    assert _counts(_apply(a, page)) == (3, 0, 0)
    size = _log_size(a)
    # Only the amber record has a row: its log entry is a commitment, so the row is the only
    # place its digest and sender are kept.
    rows = _received_rows(a)
    assert set(rows) == {("signal", page[2]["id"], 1)}
    assert rows[("signal", page[2]["id"], 1)].digest == _digest(page[2])
    assert rows[("signal", page[2]["id"], 1)].received_from == "b.test"
    held = _signals(a)
    assert held[page[0]["id"]].change_seq == _received_index(a, page[0])

    again = _apply(a, page)
    assert _counts(again) == (0, 3, 0)
    assert _log_size(a) == size  # nothing logged, not even a refusal
    assert set(_received_rows(a)) == {("signal", page[2]["id"], 1)}


def test_purge_then_the_same_page_again_is_all_duplicates(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """Guards the semantics across a purge (it passes on the code before the change too: there
    every record had a received_record row)."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    retracted, expired, amber = (
        _signal(b.node.key, 11),
        _signal(b.node.key, 12),
        _signal(b.node.key, 13, audience=AMBER),
    )
    page = [retracted, expired, amber]
    withdrawn = [_retraction(b, retracted)]  # a later page: a source serves one record a row
    assert _counts(_apply(a, page)) == (3, 0, 0)
    assert _counts(_apply(a, withdrawn)) == (1, 0, 0)
    signal_entry = {r["id"]: _received_index(a, r) for r in (retracted, expired)}
    with a.node.db.write() as session:  # as expire_due would (it does not move change_seq)
        session.execute(
            update(SignalRow)
            .where(SignalRow.uid.in_([expired["id"], amber["id"]]))  # type: ignore[attr-defined]
            .values(status="expired")
        )

    assert _purge(a) == 3
    assert _signals(a) == {}
    rows = _received_rows(a)
    assert set(rows) == {
        ("signal", retracted["id"], 1),
        ("signal", expired["id"], 1),
        ("signal", amber["id"], 1),
        ("retraction", retracted["id"], 1),
    }
    for record in (retracted, expired):
        row = rows[("signal", record["id"], 1)]
        assert (row.origin, row.digest, row.received_from) == ("b.test", _digest(record), "b.test")
        assert row.log_idx == signal_entry[record["id"]]  # the signal's own `received` entry
    size = _log_size(a)

    assert _counts(_apply(a, page + withdrawn)) == (0, 4, 0)
    assert _log_size(a) == size
    assert _signals(a) == {}
    # A second purge finds nothing, and the rows are not written twice.
    assert _purge(a) == 0
    assert set(_received_rows(a)) == set(rows)


def test_older_version_after_the_newer_was_purged_is_a_duplicate(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """Failed on the code before this change: with no row for version 1 (never received), it
    was applied as a new signal, bringing back one its origin had withdrawn."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    v1, v2 = _signal(b.node.key, 21, 1), _signal(b.node.key, 21, 2)
    assert _counts(_apply(a, [v2, _retraction(b, v2)])) == (2, 0, 0)
    assert _purge(a) == 1
    size = _log_size(a)

    assert _counts(_apply(a, [v1])) == (0, 1, 0)
    assert _log_size(a) == size
    assert _signals(a) == {}
    assert ("signal", v1["id"], 1) not in _received_rows(a)


def test_newer_version_of_a_signal_held_retracted_is_logged_once(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    v1, v2 = _signal(b.node.key, 31, 1), _signal(b.node.key, 31, 2)
    assert _counts(_apply(a, [v1, _retraction(b, v1)])) == (2, 0, 0)
    size = _log_size(a)

    assert _counts(_apply(a, [v2])) == (1, 0, 0)
    assert _log_size(a) == size + 1
    held = _signals(a)[v1["id"]]
    assert (held.version, held.status) == (1, "retracted")  # a retraction stands for every version
    # The signal row is not changed, so only a received row remembers version 2.
    row = _received_rows(a)[("signal", v1["id"], 2)]
    assert (row.digest, row.log_idx) == (_digest(v2), _received_index(a, v2))

    assert _counts(_apply(a, [v2])) == (0, 1, 0)
    assert _log_size(a) == size + 1


def test_forged_older_version_is_refused_not_applied(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """An older version than one held (or, after a purge, received) is checked before it is
    counted a duplicate: a forged copy is refused, a genuine one is a duplicate."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    v1, v2, v3 = (_signal(b.node.key, 41, v) for v in (1, 2, 3))
    forged = {**v1, "confidence": 99}  # the signature no longer matches
    assert _counts(_apply(a, [v2])) == (1, 0, 0)
    size = _log_size(a)

    assert _counts(_apply(a, [forged])) == (0, 0, 1)
    assert _counts(_apply(a, [v1])) == (0, 1, 0)
    held = _signals(a)[v2["id"]]
    assert (held.version, held.record) == (2, v2)
    assert _log_size(a) == size + 1  # only the refusal's entry
    (refused,) = a.log_entries("refused")
    assert refused["count"] == 1

    # The same once the signal is gone and only its received row is left.
    assert _counts(_apply(a, [v3, _retraction(b, v3)])) == (2, 0, 0)
    assert _purge(a) == 1
    assert _counts(_apply(a, [forged, v1, v2])) == (0, 2, 1)
    assert _signals(a) == {}


def test_an_older_version_later_in_the_same_page_changes_nothing(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """Failed on the code before: the older version replaced the newer one pending in the
    page (a relay holding both genuine records could downgrade a signal)."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    v1, v2 = _signal(b.node.key, 51, 1), _signal(b.node.key, 51, 2)
    size = _log_size(a)
    assert _counts(_apply(a, [v2, v1])) == (1, 1, 0)
    assert _log_size(a) == size + 1
    held = _signals(a)[v2["id"]]
    assert (held.version, held.record) == (2, v2)


def test_a_newer_version_after_its_retraction_in_the_same_page_stays_retracted(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """As for a signal held retracted (a retraction stands for every version). Failed on the
    code before: the newer version replaced the retracted row pending in the page, active."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    v1, v2 = _signal(b.node.key, 61, 1), _signal(b.node.key, 61, 2)
    assert _counts(_apply(a, [v1, _retraction(b, v1), v2])) == (3, 0, 0)
    held = _signals(a)[v1["id"]]
    assert (held.version, held.status) == (1, "retracted")
    # The signal row does not record version 2, so a received row does.
    assert _received_rows(a)[("signal", v1["id"], 2)].digest == _digest(v2)
    assert _counts(_apply(a, [v2])) == (0, 1, 0)
