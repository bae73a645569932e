"""`insert_many` (app/storage/bulk.py, the received-record inserts) stores exactly what the
Core insert `connection.execute(table.insert(), rows)` stores, on both engines: same values
read back, datetimes in UTC, JSON round-tripped, booleans, NULLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select

from app.services.node import Node
from app.storage.bulk import insert_many
from app.storage.models import FeedbackRow

FEEDBACK = FeedbackRow.__table__  # type: ignore[attr-defined]


NOW = datetime.now(UTC)


def _feedback_rows(prefix: str, now: datetime = NOW) -> list[dict[str, Any]]:
    other_zone = timezone(timedelta(hours=-5))
    return [
        {
            "uid": f"{prefix}{i}",
            "origin": "peer.example",
            "signal_origin": "origin.example",
            "signal_uid": f"s{i}",
            "verdict": "true_positive",
            "reason": None if i % 2 else 'r\u00e9ason "quoted"\n',
            # The same datetime object in many rows (converted once) and distinct ones,
            # one of them in another zone: all must be stored as the same UTC instant.
            "created_at": now if i < 3 else (now + timedelta(seconds=i)).astimezone(other_zone),
            "received_from": "peer.example",
            "submitted_by": None,
            "change_seq": 1000 + i,
            "record": {"kind": "feedback", "n": i, "nested": [True, None, {"\u00fc": "x"}]},
        }
        for i in range(6)
    ]


def _read(node: Node, prefix: str) -> list[dict[str, Any]]:
    with node.db.read() as session:
        rows = session.connection().execute(
            select(FEEDBACK).where(FEEDBACK.c.uid.like(prefix + "%")).order_by(FEEDBACK.c.uid)
        )
        return [{k: v for k, v in r._mapping.items() if k != "id"} for r in rows]


def test_same_rows_as_the_core_insert(node: Node) -> None:
    with node.db.write() as session:
        session.connection().execute(FEEDBACK.insert(), _feedback_rows("core"))
        insert_many(session.connection(), FEEDBACK, _feedback_rows("fast"))
    core, fast = _read(node, "core"), _read(node, "fast")
    assert len(fast) == 6
    for c, f in zip(core, fast, strict=True):
        assert c.pop("uid")[len("core") :] == f.pop("uid")[len("fast") :]
        assert c == f
    assert fast[3]["created_at"].tzinfo is not None
    assert fast[3]["created_at"] - fast[0]["created_at"] == timedelta(seconds=3)


def test_rows_without_every_column_take_the_core_path(node: Node) -> None:
    """A column with a Python-side default that the rows leave out is still filled in."""
    table = Table(
        "bulk_insert_defaults",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(20), nullable=False),
        Column("n", Integer, nullable=False, default=7),
    )
    table.create(node.db.engine)
    try:
        with node.db.write() as session:
            insert_many(session.connection(), table, [{"name": "a"}, {"name": "b"}])
        with node.db.read() as session:
            got = session.connection().execute(
                select(table.c.name, table.c.n).order_by(table.c.name)
            )
            assert [tuple(r) for r in got] == [("a", 7), ("b", 7)]
    finally:
        table.drop(node.db.engine)


def test_rows_must_share_their_keys(node: Node) -> None:
    rows = _feedback_rows("mixed")
    del rows[2]["reason"]
    with pytest.raises(Exception), node.db.write() as session:
        insert_many(session.connection(), FEEDBACK, rows)


def test_binary_columns_store_the_same_blob(node: Node) -> None:
    """On SQLite the driver gets the bytes as they are (not SQLAlchemy's memoryview wrapper):
    the stored value must still be the same BLOB, read back as the same bytes."""
    from sqlalchemy import LargeBinary, func

    table = Table(
        "bulk_blob_test",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("h", LargeBinary(32), nullable=True),
    )
    table.create(node.db.engine)
    try:
        values = [bytes(range(32)), b"\x00" * 32, b"", None]
        with node.db.write() as session:
            conn = session.connection()
            conn.execute(table.insert(), [{"id": i, "h": v} for i, v in enumerate(values)])
            insert_many(conn, table, [{"id": 10 + i, "h": v} for i, v in enumerate(values)])
        with node.db.read() as session:
            rows = dict(session.connection().execute(select(table.c.id, table.c.h)).all())
            # The same type and length in the database itself, not only after reading back.
            kinds = dict(
                session.connection().execute(select(table.c.id, func.length(table.c.h))).all()
            )
        for i, v in enumerate(values):
            assert rows[i] == rows[10 + i] == v
            assert kinds[i] == kinds[10 + i]
        if node.db.is_sqlite:
            with node.db.engine.connect() as conn:
                types = dict(conn.exec_driver_sql("SELECT id, typeof(h) FROM bulk_blob_test").all())
            assert [types[i] for i in range(4)] == [types[10 + i] for i in range(4)]
            assert types[10] == "blob"
    finally:
        table.drop(node.db.engine)
