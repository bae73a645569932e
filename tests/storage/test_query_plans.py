"""Queries that page through `signal` in row-id order must walk the primary key on SQLite.

SQLite plans without statistics, so `status = 'active'` looks selective and it read every active
signal through ix_signal_status_valid_until, then sorted them all, for each page: a worker's
index load took over 5 minutes at 5M signals, quadratic in the list (app/storage/sqlplan.py).
Plans do not depend on the table's size here, so a few rows show the plan a large list gets.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from app.services import signals
from app.services.index_sync import IndexSync
from app.services.node import Node
from app.storage.models import SignalRow
from app.storage.sqlplan import unindexed
from tests.hostile.helpers import QueryCounter


def _md5(i: int) -> str:
    return f"{i * 7919:032x}"


def _sqlite_plan(node: Node, statement: str, params: Any) -> str:
    with node.db.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
    return " | ".join(str(r[-1]) for r in rows)


def test_index_load_pages_on_the_primary_key(node: Node) -> None:
    created = signals.submit_batch(
        node, [{"type": "md5", "value": _md5(i), "categories": ["csam"]} for i in range(30)], None
    )
    uids = [r.id for r in created.items if r.id]
    signals.retract(node, uids[3], "test")
    sync = IndexSync(node)
    with QueryCounter(node.db) as counter:
        sync.load()
    pages = [(s, p) for s, p in counter.executed if "FROM signal" in s and "LIMIT" in s.upper()]
    assert pages, counter.executed
    # The load is right: every active signal, not the retracted one.
    assert len(node.index) == 29
    if node.db.is_sqlite:
        for statement, params in pages:
            plan = _sqlite_plan(node, statement, params)
            assert "TEMP B-TREE" not in plan, plan
            assert "PRIMARY KEY" in plan, plan


def test_unindexed_renders_sqlites_unary_plus_and_nothing_elsewhere() -> None:
    c = SignalRow.__table__.c  # type: ignore[attr-defined]
    stmt = select(c.id).where(unindexed(c.status) == "active")
    assert "+signal.status = ?" in str(stmt.compile(dialect=sqlite.dialect()))
    pg = str(stmt.compile(dialect=postgresql.dialect()))
    assert "signal.status = " in pg and "+" not in pg


def test_unindexed_comparisons_bind_as_the_column_type(node: Node) -> None:
    """The compared value goes through the column's own conversion (a UTC datetime here), so
    the condition means what it means on the plain column."""
    from datetime import timedelta

    from app.storage.types import utcnow

    signals.submit_batch(node, [{"type": "md5", "value": _md5(1), "categories": ["csam"]}], None)
    c = SignalRow.__table__.c  # type: ignore[attr-defined]
    now = utcnow()
    with node.db.read() as s:
        later = s.execute(select(c.id).where(unindexed(c.valid_until) > now)).all()
        never = s.execute(
            select(c.id).where(unindexed(c.valid_until) > now + timedelta(days=36500))
        ).all()
        plain = s.execute(select(c.id).where(c.valid_until > now)).all()
    assert len(later) == len(plain) == 1 and never == []
    if node.db.is_sqlite:
        with node.db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM signal")).scalar() == 1


def test_signal_list_pages_walk_ids(node: Node) -> None:
    """GET /v1/signals with the filters a platform pages its own list with: each page is read
    in id order, never by sorting every matching row (0.5-2.7 s a page at 5M signals)."""
    signals.submit_batch(
        node, [{"type": "md5", "value": _md5(i), "categories": ["csam"]} for i in range(12)], None
    )
    variants: list[dict[str, Any]] = [
        {"status": "active"},
        {"status": "active", "origin": node.origin},
        {"origin": node.origin},
        {"status": "active", "type_": "md5"},
        {"status": "active", "category": "csam"},
        {},
    ]
    for variant in variants:
        args: dict[str, Any] = {"type_": None, "category": None, "status": None, "origin": None}
        args.update(variant)
        first = signals.list_page(node, **args, after=None, limit=5)
        with QueryCounter(node.db) as counter:
            second = signals.list_page(node, **args, after=first.next, limit=5)
        got = [s.id for s in first.items + second.items]
        assert len(got) == 10 and len(set(got)) == 10, variant  # pages are right, no overlap
        if node.db.is_sqlite:
            (statement, params), *_ = [(s, p) for s, p in counter.executed if "FROM signal" in s]
            plan = _sqlite_plan(node, statement, params)
            assert "TEMP B-TREE" not in plan, (variant, plan)


def test_log_lookups_by_kind_search_an_index(node: Node) -> None:
    """The newest `config` entry (at start, under the sequencer lock) and the node's key
    rotations (every descriptor request) were found by walking the whole log: 20 s and 2.2 s at
    5M entries. They now search the partial index of the kinds looked up."""
    from app.api.wellknown import descriptor
    from app.services.log import log_config_if_changed

    signals.submit_batch(
        node, [{"type": "md5", "value": _md5(i), "categories": ["csam"]} for i in range(5)], None
    )
    with QueryCounter(node.db) as counter:
        log_config_if_changed(node)
        descriptor(node)
    lookups = [(s, p) for s, p in counter.executed if "FROM log_entry" in s and "kind" in s]
    assert len(lookups) == 2, counter.executed
    with node.db.engine.connect() as conn:
        for statement, params in lookups:
            if node.db.is_sqlite:
                plan = _sqlite_plan(node, statement, params)
            else:  # the index must be usable (a planner may still scan a table this small)
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = " ".join(
                    str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + statement, params)
                )
            assert "ix_log_entry_looked_up_kind" in plan, plan


def test_only_indexed_kinds_are_looked_up() -> None:
    import pytest

    from app.storage import logscan

    with pytest.raises(ValueError, match="not indexed"):
        logscan.of_kind("signal")
