"""`insert_many` (app/storage/bulk.py, the received-record inserts) stores exactly what the
Core insert `connection.execute(table.insert(), rows)` stores, on both engines: same values
read back, datetimes in UTC, JSON round-tripped, booleans, NULLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


def _signal_rows() -> list[dict[str, Any]]:
    """Signal rows whose JSON columns hold every kind of value: dicts, lists, strings, None
    and SQLAlchemy's JSON.NULL (which the generic processor must still see). (Not a bare
    number: SQLite's JSON column affinity would store the text "3" as an integer, which no
    reader of these columns expects, on either path.)"""
    from sqlalchemy import JSON

    kinds: list[Any] = [
        {"b": 1, "a": [True, None]},
        ["x", "\u00fc", 2],
        "a string",
        None,
        JSON.NULL,
        {},
        [],
    ]
    return [
        {
            "uid": f"u{i}",
            "origin": "peer.example",
            "version": 1,
            "type": "md5",
            "value": f"{i:032x}",
            "match_key": f"md5:{i:032x}",
            "attrs": kinds[i % len(kinds)],
            "categories": kinds[(i + 1) % len(kinds)],
            "indicators": kinds[(i + 2) % len(kinds)],
            "opinion": "negative",
            "confidence": 50,
            "reviewed": bool(i % 2),
            "tlp": "green",
            "audience_peers": [],
            "audience_hops": 2,
            "valid_from": NOW,
            "valid_until": NOW + timedelta(days=i),
            "status": "active",
            "retracted_at": None,
            "retract_reason": None,
            "retraction": kinds[(i + 3) % len(kinds)],
            "created_at": NOW,
            "updated_at": NOW,
            "submitted_by": None,
            "received_from": "peer.example",
            "hops": 1,
            "change_seq": i,
            "created_seq": None,
            "feedback_counts": {},
            "feedback_status": "none",
            "record": {"kind": "signal", "n": i},
        }
        for i in range(len(kinds) * 2)
    ]


def test_parameters_are_what_the_column_processors_give(node: Node) -> None:
    """`Prepared.parameters` (columns converted together, JSON dicts and lists handed to the
    serializer directly) gives the driver exactly what each column's own bind processor gives
    value by value, on this engine's dialect and on both dialects' defaults."""
    from sqlalchemy import create_engine

    from app.storage.bulk import Prepared
    from app.storage.db import _json_dumps
    from app.storage.models import SignalRow

    table = SignalRow.__table__  # type: ignore[attr-defined]
    dialects = [
        node.db.engine.dialect,
        create_engine("sqlite://", json_serializer=_json_dumps).dialect,
        create_engine("sqlite://").dialect,  # json.dumps, SQLAlchemy's default
    ]
    for dialect in dialects:
        rows = [r for r in _signal_rows() if set(r) == {c.name for c in table.c} - {"id"}]
        assert rows
        prepared = Prepared.of(table.insert(), dialect, sorted(rows[0]))
        if dialect.name == "sqlite":
            assert any(prepared.json_direct)  # the fast path is taken there
        # SQLAlchemy's own processor of each column (not the ones Prepared keeps).
        own = [
            table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in prepared.names
        ]
        expected = []
        for row in rows:
            one = tuple(
                row[n] if p is None else p(row[n]) for n, p in zip(prepared.names, own, strict=True)
            )
            expected.append(one if prepared.positional else dict(zip(prepared.names, one)))
        assert _comparable(prepared.parameters(rows)) == _comparable(expected)
        assert _comparable(prepared.parameters(rows[:1])) == _comparable(expected[:1])
        assert prepared.parameters([]) == []


def _comparable(params: list[Any]) -> list[Any]:
    """psycopg's Json/Jsonb wrappers do not compare by value: compare their type and value."""

    def one(v: Any) -> Any:
        return (type(v).__name__, v.obj) if hasattr(v, "obj") and hasattr(v, "dumps") else v

    return [
        {k: one(v) for k, v in p.items()} if isinstance(p, dict) else tuple(map(one, p))
        for p in params
    ]


def test_json_values_of_every_kind_store_as_the_core_insert_does(node: Node) -> None:
    from app.storage.models import SignalRow

    table = SignalRow.__table__  # type: ignore[attr-defined]
    core = _signal_rows()
    fast = _signal_rows()
    for r in fast:
        r["uid"] = "f" + r["uid"]
        r["match_key"] = "f" + r["match_key"]
    with node.db.write() as session:
        session.connection().execute(table.insert(), core)
        insert_many(session.connection(), table, fast)
    with node.db.read() as session:
        got = {
            r.uid: {k: v for k, v in r._mapping.items() if k not in ("id", "uid", "match_key")}
            for r in session.connection().execute(select(table))
        }
    for r in core:
        assert got[r["uid"]] == got["f" + r["uid"]]


def test_run_values_takes_rows_in_any_field_order(node: Node) -> None:
    """`Prepared.run_values` (the log's buffered rows, kept as tuples) stores what `run` stores
    from the same rows as dicts, whatever the order of the given fields; fields that are not
    exactly the statement's are refused."""
    from app.storage.bulk import Prepared

    rows = _feedback_rows("dict")
    prepared = Prepared.of(FEEDBACK.insert(), node.db.engine.dialect, sorted(rows[0]))
    fields = tuple(reversed(prepared.names))
    values = [tuple(r[f] for f in fields) for r in _feedback_rows("vals")]
    with node.db.write() as session:
        cur = session.connection().connection.cursor()
        prepared.run(cur, rows)
        prepared.run_values(cur, fields, values)
        prepared.run_values(cur, fields, [])
        with pytest.raises(KeyError):
            prepared.run_values(cur, fields[1:], [v[1:] for v in values])
        cur.close()
    by_dict, by_values = _read(node, "dict"), _read(node, "vals")
    assert len(by_dict) == len(by_values) == 6
    for d, v in zip(by_dict, by_values, strict=True):
        assert d.pop("uid")[len("dict") :] == v.pop("uid")[len("vals") :]
        assert d == v


_zones = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-24 * 60 + 1, 24 * 60 - 1)
)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.just(UTC) | _zones | st.none()))
def test_utc_datetimes_convert_as_sqlalchemy_does(value: datetime) -> None:
    """The fast text of a UTCDateTime on SQLite (`bulk._utc_text`) is SQLAlchemy's: the type's
    own processing, then SQLite's DATETIME format; a naive datetime is refused the same way."""
    from sqlalchemy import create_engine

    from app.storage.bulk import _utc_text
    from app.storage.types import UTCDateTime

    dialect = create_engine("sqlite://").dialect
    column_type = UTCDateTime()
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    fast = _utc_text(column_type, dialect, process)
    assert fast is not process  # the fast path is taken on this SQLAlchemy
    if value.tzinfo is None:
        with pytest.raises(ValueError):
            process(value)
        with pytest.raises(ValueError):
            fast(value)
    else:
        assert fast(value) == process(value)
    assert fast(None) is process(None) is None
