"""Read-only queries over the exchange log for auditors (beside `app.storage.log`).

Kept apart from the append path: nothing here takes the sequencer lock or writes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from app.storage.models import LogEntryRow, LogNodeRow


def leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    """Stored leaf hashes of entries `[start, end)`, in order (one range scan)."""
    rows = session.execute(
        select(LogNodeRow.hash)  # type: ignore[call-overload]
        .where(col(LogNodeRow.level) == 0, col(LogNodeRow.idx) >= start, col(LogNodeRow.idx) < end)
        .order_by(col(LogNodeRow.idx))
    ).all()
    return [bytes(r[0]) for r in rows]


def last_entry_of_kind(session: Session, kind: str) -> LogEntryRow | None:
    """The newest entry of `kind`.

    There is no index on `kind` (no migration for it yet), so this walks the primary key
    backwards to the newest such entry: fine at start-up, not for per-request use.
    """
    stmt = (
        select(LogEntryRow)
        .where(col(LogEntryRow.kind) == kind)
        .order_by(col(LogEntryRow.idx).desc())
        .limit(1)
    )
    return session.execute(stmt).scalars().first()


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
