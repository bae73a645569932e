"""Repositories over the signal, feedback and API-key tables.

Each function takes the caller's session; the service layer owns transactions. Methods are named
after what the node does with the data, not after SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlmodel import Session, col

from app.storage.models import ApiKeyRow, FeedbackRow, SignalRow

# --- signals -------------------------------------------------------------------------------


def find_active(session: Session, origin: str, match_key: str) -> SignalRow | None:
    """The active signal `origin` published for this exact value, if any."""
    stmt = select(SignalRow).where(
        col(SignalRow.origin) == origin,
        col(SignalRow.match_key) == match_key,
        col(SignalRow.status) == "active",
    )
    return session.execute(stmt.limit(1)).scalars().first()


def get_signal(session: Session, uid: str, origin: str | None = None) -> SignalRow | None:
    """By public id; local signals win over received ones if a peer reused an id."""
    stmt = select(SignalRow).where(col(SignalRow.uid) == uid)
    if origin is not None:
        stmt = stmt.where(col(SignalRow.origin) == origin)
    rows = list(session.execute(stmt).scalars())
    rows.sort(key=lambda r: (r.received_from is not None, r.id))
    return rows[0] if rows else None


def signals_by_ids(session: Session, ids: Sequence[int]) -> dict[int, SignalRow]:
    if not ids:
        return {}
    stmt = select(SignalRow).where(col(SignalRow.id).in_(list(ids)))
    return {r.id: r for r in session.execute(stmt).scalars() if r.id is not None}


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
    stmt = select(SignalRow).where(col(SignalRow.id) > after_id)
    if type_:
        stmt = stmt.where(col(SignalRow.type) == type_)
    if origin:
        stmt = stmt.where(col(SignalRow.origin) == origin)
    if status == "active":
        stmt = stmt.where(col(SignalRow.status) == "active", col(SignalRow.valid_until) > now)
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


def changed_since(session: Session, seq: int, limit: int = 10_000) -> list[SignalRow]:
    """Signals whose latest change is after log index `seq`, in commit order."""
    stmt = (
        select(SignalRow)
        .where(col(SignalRow.change_seq) > seq)
        .order_by(col(SignalRow.change_seq))
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def all_active(session: Session) -> list[SignalRow]:
    stmt = select(SignalRow).where(col(SignalRow.status) == "active")
    return list(session.execute(stmt).scalars())


def max_change_seq(session: Session) -> int:
    from sqlalchemy import func

    return int(session.execute(select(func.max(SignalRow.change_seq))).scalar() or 0)


def expire_due(session: Session, now: datetime) -> list[SignalRow]:
    stmt = select(SignalRow).where(
        col(SignalRow.status) == "active", col(SignalRow.valid_until) <= now
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


# --- feedback ------------------------------------------------------------------------------


def feedback_for(session: Session, signal_origin: str, signal_uid: str) -> list[FeedbackRow]:
    stmt = select(FeedbackRow).where(
        col(FeedbackRow.signal_origin) == signal_origin, col(FeedbackRow.signal_uid) == signal_uid
    )
    return list(session.execute(stmt).scalars())


def get_feedback(session: Session, origin: str, uid: str) -> FeedbackRow | None:
    stmt = select(FeedbackRow).where(col(FeedbackRow.origin) == origin, col(FeedbackRow.uid) == uid)
    return session.execute(stmt).scalars().first()


# --- API keys ------------------------------------------------------------------------------


def api_key_by_hash(session: Session, key_hash: str) -> ApiKeyRow | None:
    stmt = select(ApiKeyRow).where(col(ApiKeyRow.key_hash) == key_hash)
    return session.execute(stmt).scalars().first()


def api_keys(session: Session) -> list[ApiKeyRow]:
    return list(session.execute(select(ApiKeyRow).order_by(col(ApiKeyRow.id))).scalars())
