"""Read-only queries over the exchange log for auditors (beside `app.storage.log`).

Kept apart from the append path: nothing here takes the sequencer lock or writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select, text
from sqlmodel import Session, col

from app.storage.models import LOOKED_UP_KINDS, LOOKED_UP_KINDS_SQL, LogEntryRow, LogNodeRow

_CHUNK = 200  # terms per OR: far below SQLite's expression-depth limit


def node_hashes(
    session: Session | Connection, ids: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Many perfect-subtree hashes by primary key, a few queries for any number of them.

    Written as `(level = ? AND idx = ?) OR ...` on purpose: SQLite (3.40) answers a row-value
    `(level, idx) IN (...)` with a full table scan, which made every proof O(n); the OR form
    is one index search per term there (MULTI-INDEX OR) and a BitmapOr on PostgreSQL.
    """
    out: dict[tuple[int, int], bytes] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        cond = or_(
            *(and_(col(LogNodeRow.level) == lv, col(LogNodeRow.idx) == ix) for lv, ix in chunk)
        )
        rows = session.execute(
            select(LogNodeRow.level, LogNodeRow.idx, LogNodeRow.hash).where(cond)  # type: ignore[call-overload]
        ).all()
        out.update({(int(r[0]), int(r[1])): bytes(r[2]) for r in rows})
    return out


class NodeReader:
    """`get(level, index)` for proof code: prefetch what `merkle.*_node_ids` names in one go."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._cache: dict[tuple[int, int], bytes] = {}

    def prefetch(self, ids: Iterable[tuple[int, int]]) -> None:
        missing = [i for i in dict.fromkeys(ids) if i not in self._cache]
        self._cache.update(node_hashes(self._session, missing))

    def __call__(self, level: int, index: int) -> bytes:
        h = self._cache.get((level, index))
        if h is None:
            found = node_hashes(self._session, [(level, index)])
            if not found:
                raise LookupError(f"log node ({level}, {index}) missing")
            h = self._cache[(level, index)] = found[(level, index)]
        return h


def leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    """Stored leaf hashes of entries `[start, end)`, in order (one range scan)."""
    rows = session.execute(
        select(LogNodeRow.hash)  # type: ignore[call-overload]
        .where(col(LogNodeRow.level) == 0, col(LogNodeRow.idx) >= start, col(LogNodeRow.idx) < end)
        .order_by(col(LogNodeRow.idx))
    ).all()
    return [bytes(r[0]) for r in rows]


def of_kind(kind: str) -> ColumnElement[bool]:
    """The condition for entries of `kind`, one of the kinds the partial index
    ix_log_entry_looked_up_kind holds (`models.LOOKED_UP_KINDS`). It repeats the index's own
    condition beside `kind = ?`, the form SQLite needs to use a partial index; any other kind
    is refused, as it would be a walk over the whole log."""
    if kind not in LOOKED_UP_KINDS:
        raise ValueError(f"log entries of kind {kind!r} are not indexed for lookup")
    return and_(col(LogEntryRow.kind) == kind, text(LOOKED_UP_KINDS_SQL))


def entries_of_kind(session: Session, kind: str) -> list[LogEntryRow]:
    """Every entry of `kind`, oldest first (an index search)."""
    stmt = select(LogEntryRow).where(of_kind(kind)).order_by(col(LogEntryRow.idx))
    return list(session.execute(stmt).scalars())


def last_entry_of_kind(session: Session, kind: str) -> LogEntryRow | None:
    """The newest entry of `kind` (an index search)."""
    stmt = select(LogEntryRow).where(of_kind(kind)).order_by(col(LogEntryRow.idx).desc()).limit(1)
    return session.execute(stmt).scalars().first()


def logged_config(session: Session) -> dict[str, Any] | None:
    """The `config` member of the newest `config` entry (the node's public configuration as
    last logged: origin, verifier key, ...); None if none was logged. An entry without one
    gives `{}`."""
    last = last_entry_of_kind(session, "config")
    if last is None:
        return None
    config = json.loads(last.data).get("config")
    return config if isinstance(config, dict) else {}


def first_index_at_or_after(session: Session, when: datetime, lo: int, hi: int) -> int:
    """The smallest index in `[lo, hi]` whose entry was created at or after `when`.

    A binary search by primary key (O(log n) point reads). Entries are appended under the
    sequencer lock, so their times rise with their index to the precision of the clocks that
    wrote them; callers must check what they find and treat a miss as possible.
    """
    while lo < hi:
        mid = (lo + hi) // 2
        created = session.execute(
            select(LogEntryRow.created_at).where(col(LogEntryRow.idx) == mid)  # type: ignore[call-overload]
        ).scalar_one_or_none()
        if created is None or created >= when:
            hi = mid
        else:
            lo = mid + 1
    return lo
