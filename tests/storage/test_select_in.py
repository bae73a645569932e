"""`peers.select_in` (the apply path's lookups on the driver) answers as the SQLAlchemy
`col.in_(...)` query it replaces, on both engines: chunks of 500, ids that need quoting,
names that need quoting, no match, and rows added earlier in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.services.node import Node
from app.storage import peers, tombstones
from app.storage.bulk import insert_many
from app.storage.models import ReceivedRecordRow, TombstoneRow

RECEIVED = ReceivedRecordRow.__table__  # type: ignore[attr-defined]
NOW = datetime.now(UTC)


def _received(n: int) -> list[dict[str, Any]]:
    return [
        {
            "origin": "peer.example" if i % 3 else "other.example",
            "kind": "signal" if i % 2 else "feedback",
            "rid": f"r{i:05d}" if i % 7 else f"r'{i}%s?\"",  # quotes and placeholders in data
            "version": 1 + i % 4,
            "digest": f"{i:064x}",
            "received_from": "peer.example",
            "log_idx": i,
            "created_at": NOW,
        }
        for i in range(n)
    ]


def test_same_answer_as_the_orm_query(node: Node) -> None:
    rows = _received(3000)
    with node.db.write() as session:
        insert_many(session.connection(), RECEIVED, rows)
        asked = [r["rid"] for r in rows if r["origin"] == "peer.example" and r["kind"] == "signal"]
        asked += ["missing", "r'0%s?\""]  # one absent, one of another origin
        got = peers.select_in(
            session,
            RECEIVED,
            ("rid", "version"),
            {"origin": "peer.example", "kind": "signal"},
            "rid",
            asked,
        )
        c = RECEIVED.c
        want = session.connection().execute(
            select(c.rid, c.version).where(
                c.origin == "peer.example", c.kind == "signal", c.rid.in_(asked)
            )
        )
        assert len(got) > 500  # more than one chunk
        assert sorted((r, int(v)) for r, v in got) == sorted((r, int(v)) for r, v in want)
        assert peers.select_in(session, RECEIVED, ("rid",), {"origin": "x"}, "rid", []) == []
        keys = [(r["origin"], r["kind"], r["rid"], r["version"]) for r in rows[:40]]
        wrong_version = [(o, k, rid, v + 1) for o, k, rid, v in keys]
        found, newest = peers.received_keys(session, keys + wrong_version)
        assert found == set(keys)
        # Each id has one row here: the newest signal version is that row's.
        assert newest == {(o, rid): v for o, k, rid, v in keys if k == "signal"}


def test_sees_rows_pending_in_the_session(node: Node) -> None:
    """Like the ORM's autoflush: an object added in this transaction and not yet flushed."""
    with node.db.write() as session:
        session.add(
            TombstoneRow(
                origin="peer.example",
                uid="u1",
                record={"kind": "retraction"},
                received_from="peer.example",
                created_at=NOW,
            )
        )
        found = tombstones.tombstones_for(session, [("peer.example", "u1"), ("peer.example", "u2")])
        assert found == {("peer.example", "u1"): {"kind": "retraction"}}


def test_signals_by_keys_loads_only_what_exists(node: Node) -> None:
    with node.db.write() as session:
        assert peers.signals_by_keys(session, [("peer.example", f"u{i}") for i in range(600)]) == {}
