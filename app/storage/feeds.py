"""Queries behind the consumer feeds (StopNCII-style, changes, TAXII): signals in log order.

Every query here takes the TLP levels the caller may see and filters on them in SQL, so a
restricted row never reaches the service layer of a feed at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import String, cast, delete, func
from sqlmodel import Session, col, select

from app.storage.models import LogEntryRow, LogHead, SignalRow, StopNCIIPageRow
from app.storage.sqlplan import unindexed


def log_index_at(session: Session, at: datetime) -> int:
    """The first log index whose entry was appended at or after `at` (the log size if none).

    Entries are appended under the sequencer lock with the clock read inside it, so their times
    never decrease along the index: a binary search over primary-key lookups finds the boundary
    in O(log n) without an index on the time column.
    """
    # The sequencer's committed size, not count(*): counting scans the whole log (45 ms at
    # 5M entries, per TAXII or StopNCII request that names a time).
    lo, hi = 0, log_size(session)
    while lo < hi:
        mid = (lo + hi) // 2
        entry = session.get(LogEntryRow, mid)
        if entry is None or entry.created_at >= at:
            hi = mid
        else:
            lo = mid + 1
    return lo


def signals_by_change(
    session: Session,
    *,
    tlps: Sequence[str],
    after_seq: int,
    before_seq: int,
    limit: int,
    types: Sequence[str] | None = None,
    category: str | None = None,
) -> list[tuple[SignalRow, datetime]]:
    """Signals whose latest change is in (`after_seq`, `before_seq`), in change order, each with
    the time of that change (the log entry's time). `limit` rows at most.

    Always a walk of ix_signal_change_seq over that range: nothing else orders the rows, and no
    other condition has an index worth taking (SQLite took the type's and then sorted every
    signal of those types, 8 s a StopNCII page at 5M signals; app/storage/sqlplan.py). The
    caller bounds the range, since rows the conditions refuse are read too."""
    stmt = (
        select(SignalRow, LogEntryRow.created_at)
        .join(LogEntryRow, col(LogEntryRow.idx) == col(SignalRow.change_seq))
        .where(
            col(SignalRow.change_seq) > after_seq,
            col(SignalRow.change_seq) < before_seq,
            col(SignalRow.tlp).in_(list(tlps)),
        )
    )
    if types is not None:
        stmt = stmt.where(unindexed(col(SignalRow.type)).in_(list(types)))
    if category is not None:
        # categories is a JSON list of vocabulary words; its text holds each one in quotes on
        # both engines. autoescape keeps `_` from acting as a LIKE wildcard.
        stmt = stmt.where(
            cast(col(SignalRow.categories), String).contains(f'"{category}"', autoescape=True)
        )
    stmt = stmt.order_by(col(SignalRow.change_seq)).limit(limit)
    return [(row, at) for row, at in session.exec(stmt).all()]


def expired_between(
    session: Session,
    *,
    tlps: Sequence[str],
    since: datetime,
    until: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[SignalRow]:
    """Unretracted signals whose `valid_until` falls in (since, until], ordered by
    (valid_until, id) and resumable after such a pair."""
    stmt = select(SignalRow).where(
        col(SignalRow.tlp).in_(list(tlps)),
        col(SignalRow.status) != "retracted",
        col(SignalRow.valid_until) > since,
        col(SignalRow.valid_until) <= until,
    )
    if after is not None:
        at, row_id = after
        stmt = stmt.where(
            (col(SignalRow.valid_until) > at)
            | ((col(SignalRow.valid_until) == at) & (col(SignalRow.id) > row_id))
        )
    stmt = stmt.order_by(col(SignalRow.valid_until), col(SignalRow.id)).limit(limit)
    return list(session.exec(stmt).all())


# --- StopNCII pages served (see StopNCIIPageRow) -------------------------------------------------


def stopncii_page(session: Session, key_id: int, set_ts: int) -> StopNCIIPageRow | None:
    return session.get(StopNCIIPageRow, (key_id, set_ts))


def last_stopncii_set_ts(session: Session, key_id: int) -> int | None:
    stmt = select(func.max(StopNCIIPageRow.set_ts)).where(col(StopNCIIPageRow.key_id) == key_id)
    value = session.exec(stmt).one()
    return None if value is None else int(value)


def log_size(session: Session) -> int:
    """The committed log size (entries below it are committed, in order)."""
    return int(session.exec(select(LogHead.size).where(col(LogHead.id) == 1)).one())


def stopncii_delivered(session: Session, key_id: int, walk: int, seq: int, changed_at: int) -> bool:
    """Whether a page of this walk covered log index `seq` while the change at log index
    `changed_at` was not yet visible."""
    stmt = (
        select(StopNCIIPageRow.set_ts)
        .where(
            col(StopNCIIPageRow.key_id) == key_id,
            col(StopNCIIPageRow.walk) == walk,
            col(StopNCIIPageRow.end_seq) >= seq,
            col(StopNCIIPageRow.start_seq) < seq,
            col(StopNCIIPageRow.log_size) <= changed_at,
        )
        .limit(1)
    )
    return session.exec(stmt).first() is not None


def prune_stopncii_pages(session: Session, key_id: int, before: datetime) -> None:
    session.exec(
        delete(StopNCIIPageRow).where(
            col(StopNCIIPageRow.key_id) == key_id, col(StopNCIIPageRow.issued_at) < before
        )
    )
