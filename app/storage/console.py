"""Read-only aggregates for the console's overview page. Nothing here writes.

Grouping by day is done in Python over one narrow column, so the same code runs on SQLite
and PostgreSQL (their date functions differ); the queries read only the window shown.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session, col

from app.storage.models import ApiKeyRow, FeedbackRow, LogEntryRow, PeerRow, SignalRow


def signal_counts(session: Session) -> dict[str, Counter[str]]:
    """Signals held here by type, status, TLP, origin and category."""
    out: dict[str, Counter[str]] = {
        "type": Counter(),
        "status": Counter(),
        "tlp": Counter(),
        "origin": Counter(),
        "category": Counter(),
    }
    for column, name in (
        (SignalRow.type, "type"),
        (SignalRow.status, "status"),
        (SignalRow.tlp, "tlp"),
        (SignalRow.origin, "origin"),
    ):
        stmt = select(col(column), func.count()).group_by(col(column))
        for value, n in session.execute(stmt):
            out[name][str(value)] = int(n)
    for (categories,) in session.execute(select(col(SignalRow.categories))):
        out["category"].update(categories or [])
    return out


def days_of(session: Session, column: object, since: datetime) -> Counter[str]:
    """Rows per UTC day (`YYYY-MM-DD`) of a timestamp column, from `since`."""
    stmt = select(column).where(column >= since)  # type: ignore[call-overload, operator]
    return Counter(ts.strftime("%Y-%m-%d") for (ts,) in session.execute(stmt))


def local_signals_per_day(session: Session, since: datetime) -> Counter[str]:
    stmt = select(col(SignalRow.created_at)).where(
        col(SignalRow.created_at) >= since, col(SignalRow.received_from).is_(None)
    )
    return Counter(ts.strftime("%Y-%m-%d") for (ts,) in session.execute(stmt))


def received_signals_per_day(session: Session, since: datetime) -> Counter[str]:
    stmt = select(col(SignalRow.created_at)).where(
        col(SignalRow.created_at) >= since, col(SignalRow.received_from).is_not(None)
    )
    return Counter(ts.strftime("%Y-%m-%d") for (ts,) in session.execute(stmt))


def feedback_per_day(session: Session, since: datetime) -> dict[str, Counter[str]]:
    """Feedback rows per verdict per day (`seen` is a platform's match hit)."""
    stmt = select(col(FeedbackRow.created_at), col(FeedbackRow.verdict)).where(
        col(FeedbackRow.created_at) >= since
    )
    out: dict[str, Counter[str]] = {}
    for ts, verdict in session.execute(stmt):
        out.setdefault(str(verdict), Counter())[ts.strftime("%Y-%m-%d")] += 1
    return out


def log_kinds(session: Session) -> Counter[str]:
    stmt = select(col(LogEntryRow.kind), func.count()).group_by(col(LogEntryRow.kind))
    return Counter({str(k): int(n) for k, n in session.execute(stmt)})


def totals(session: Session) -> dict[str, int]:
    def count(model: type) -> int:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())

    active_peers = (
        select(func.count()).select_from(PeerRow).where(col(PeerRow.removed_at).is_(None))
    )
    active_keys = (
        select(func.count()).select_from(ApiKeyRow).where(col(ApiKeyRow.revoked_at).is_(None))
    )
    return {
        "signals": count(SignalRow),
        "feedback": count(FeedbackRow),
        "log_entries": count(LogEntryRow),
        "peers": int(session.execute(active_peers).scalar_one()),
        "api_keys": int(session.execute(active_keys).scalar_one()),
    }


def search_signals(session: Session, q: str, limit: int = 50) -> list[SignalRow]:
    """Signals whose id is `q`, or whose canonical value is or starts with `q`."""
    like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    stmt = (
        select(SignalRow)
        .where(
            (col(SignalRow.uid) == q)
            | (col(SignalRow.value) == q)
            | col(SignalRow.value).like(like, escape="\\")
        )
        .order_by(col(SignalRow.id).desc())
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def feedback_for(session: Session, uid: str, origin: str, limit: int = 200) -> list[FeedbackRow]:
    stmt = (
        select(FeedbackRow)
        .where(col(FeedbackRow.signal_uid) == uid, col(FeedbackRow.signal_origin) == origin)
        .order_by(col(FeedbackRow.id).desc())
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())
