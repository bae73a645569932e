"""Repositories over the signal, feedback and API-key tables.

Each function takes the caller's session; the service layer owns transactions. Methods are named
after what the node does with the data, not after SQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlmodel import Session, col

from app.storage.models import ApiKeyRow, FeedbackRow, SignalRow
from app.storage.sqlplan import unindexed

# --- signals -------------------------------------------------------------------------------


def get_signal(session: Session, uid: str, origin: str | None = None) -> SignalRow | None:
    """By public id; local signals win over received ones if a peer reused an id."""
    stmt = select(SignalRow).where(col(SignalRow.uid) == uid)
    if origin is not None:
        stmt = stmt.where(col(SignalRow.origin) == origin)
    rows = list(session.execute(stmt).scalars())
    rows.sort(key=lambda r: (r.received_from is not None, r.id))
    return rows[0] if rows else None


def list_signals(
    session: Session,
    *,
    type_: str | None,
    category: str | None,
    status: str | None,
    origin: str | None,
    after_id: int,
    limit: int,
    now: datetime,
) -> list[SignalRow]:
    """A page ordered by row id (stable under inserts: new rows only ever come later)."""
    # The page is in id order, so SQLite must walk ids: on the primary key, or with a type on
    # ix_signal_type_status (type, status, then id). The origin's index, or the status index
    # without a type, would make it read and sort every matching row for each page: 0.5-2.7 s
    # a page at 5M signals (app/storage/sqlplan.py). Active is what nearly every row of a node
    # is (retracted and expired ones are purged), so filtering on the walk is the right plan;
    # the rare statuses keep their index.
    stmt = select(SignalRow).where(col(SignalRow.id) > after_id)
    if type_:
        stmt = stmt.where(col(SignalRow.type) == type_)
    if origin:
        stmt = stmt.where(unindexed(col(SignalRow.origin)) == origin)
    if status == "active":
        active = col(SignalRow.status) if type_ else unindexed(col(SignalRow.status))
        stmt = stmt.where(active == "active", unindexed(col(SignalRow.valid_until)) > now)
    elif status == "expired":
        stmt = stmt.where(
            or_(
                col(SignalRow.status) == "expired",
                (col(SignalRow.status) == "active") & (col(SignalRow.valid_until) <= now),
            )
        )
    elif status:
        stmt = stmt.where(col(SignalRow.status) == status)
    stmt = stmt.order_by(col(SignalRow.id))
    if not category:
        return list(session.execute(stmt.limit(limit)).scalars())
    # Categories are a small JSON list; filter in Python, reading ahead in chunks, so the same
    # query works on SQLite's JSON and PostgreSQL's JSONB without dialect-specific operators.
    out: list[SignalRow] = []
    last = after_id
    while len(out) < limit:
        chunk = list(session.execute(stmt.where(col(SignalRow.id) > last).limit(500)).scalars())
        if not chunk:
            break
        for row in chunk:
            if category in row.categories:
                out.append(row)
                if len(out) == limit:
                    break
        last = chunk[-1].id or last
    return out


def expire_due(session: Session, now: datetime, limit: int | None = None) -> list[SignalRow]:
    stmt = (
        select(SignalRow)
        .where(col(SignalRow.status) == "active", col(SignalRow.valid_until) <= now)
        .order_by(col(SignalRow.id))
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def purge_before(session: Session, cutoff: datetime) -> int:
    """Delete retracted/expired signals (and their feedback) whose end is before `cutoff`."""
    stmt = select(SignalRow.id, SignalRow.uid, SignalRow.origin).where(  # type: ignore[call-overload]
        col(SignalRow.status).in_(["retracted", "expired"]), col(SignalRow.updated_at) < cutoff
    )
    rows = session.execute(stmt).all()
    if not rows:
        return 0
    for _, uid, origin in rows:
        session.execute(
            delete(FeedbackRow).where(
                col(FeedbackRow.signal_uid) == uid, col(FeedbackRow.signal_origin) == origin
            )
        )
    session.execute(delete(SignalRow).where(col(SignalRow.id).in_([r[0] for r in rows])))
    return len(rows)


# --- API keys ------------------------------------------------------------------------------


def api_key_by_hash(session: Session, key_hash: str) -> ApiKeyRow | None:
    stmt = select(ApiKeyRow).where(col(ApiKeyRow.key_hash) == key_hash)
    return session.execute(stmt).scalars().first()


def live_api_key_hashes(session: Session) -> list[str]:
    """The SHA-256 of every key not revoked (the workers' key directory)."""
    stmt = select(col(ApiKeyRow.key_hash)).where(col(ApiKeyRow.revoked_at).is_(None))
    return list(session.execute(stmt).scalars())


def api_keys(session: Session) -> list[ApiKeyRow]:
    return list(session.execute(select(ApiKeyRow).order_by(col(ApiKeyRow.id))).scalars())
