"""Log entry times (`log_entry.created_at`) strictly increase along the log, even when the clock
gives two entries the same reading: TAXII's `added_after` pages by them, and a tie at a page
boundary would skip an entry."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.services import signals
from app.services.node import Node
from app.services.tx import transaction
from app.storage.models import LogEntryRow

FROZEN = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)


def test_entries_of_one_transaction_get_increasing_times_from_a_stopped_clock(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.storage.log.utcnow", lambda: FROZEN)
    with transaction(node) as tx:
        for i in range(5):
            tx.append("test", {"n": i})
    with node.db.read() as session:
        times = [r.created_at for r in session.execute(select(LogEntryRow)).scalars()]
    mine = [t for t in times if t >= FROZEN]
    assert len(mine) == 5
    assert all(a < b for a, b in itertools.pairwise(mine)), mine


def test_a_bulk_submit_logs_each_signal_at_its_own_time(node: Node) -> None:
    items: list[Any] = [
        {"type": "md5", "value": f"{i:032x}", "categories": ["csam"]} for i in range(300)
    ]
    assert signals.submit_batch(node, items, None).created == 300
    with node.db.read() as session:
        rows = session.execute(
            select(LogEntryRow.created_at).where(LogEntryRow.kind == "signal")
        ).all()
    times = [r[0] for r in rows]
    assert len(times) == 300
    assert all(a < b for a, b in itertools.pairwise(times))
