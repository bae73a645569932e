"""Repositories over the signal, feedback and API-key tables.

Each function takes the caller's session; the service layer owns transactions. Methods are named
after what the node does with the data, not after SQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlmodel import Session, col

from app.crypto.records import record_digest
from app.storage import peers
from app.storage.models import ApiKeyRow, FeedbackRow, SignalRow
from app.storage.sqlplan import unindexed
from app.storage.types import utcnow

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
    """Delete retracted/expired signals (and their feedback) whose end is before `cutoff`.

    A signal received from a peer leaves a received_record row behind (`_keep_receipts`): for
    an open signal its row was the only receipt (app/services/sync.py, `_Applier._signal`), and
    without one a peer re-sending the record (a new peer pulling an old log) would have it
    applied and logged again, or an older version applied as new."""
    stmt = select(  # type: ignore[call-overload]
        SignalRow.id, SignalRow.uid, SignalRow.origin, SignalRow.received_from
    ).where(col(SignalRow.status).in_(["retracted", "expired"]), col(SignalRow.updated_at) < cutoff)
    rows = session.execute(stmt).all()
    if not rows:
        return 0
    received = [r[0] for r in rows if r[3] is not None]
    for i in range(0, len(received), _PURGE_CHUNK):
        _keep_receipts(session, received[i : i + _PURGE_CHUNK])
    for _, uid, origin, _ in rows:
        session.execute(
            delete(FeedbackRow).where(
                col(FeedbackRow.signal_uid) == uid, col(FeedbackRow.signal_origin) == origin
            )
        )
    session.execute(delete(SignalRow).where(col(SignalRow.id).in_([r[0] for r in rows])))
    return len(rows)


_PURGE_CHUNK = 500  # records read at once (a vPDQ record is tens of KB)


def _keep_receipts(session: Session, ids: list[int]) -> None:
    """A received_record row for each of these received signals that has none: (origin,
    'signal', id, version, digest of the stored record, sender, log_idx). `log_idx` is the
    signal's own `received` entry where the row still knows it: `created_seq` once a
    retraction moved `change_seq` on, else `change_seq` (expiry does not move it, and a signal
    that arrived retracted through a tombstone keeps its own entry there). Only a signal whose
    retraction came in the same page as the signal itself has neither: its `log_idx` is the
    retraction's entry. Older databases have a row for every record: those are kept as they
    are."""
    stmt = select(  # type: ignore[call-overload]
        SignalRow.origin,
        SignalRow.uid,
        SignalRow.version,
        SignalRow.received_from,
        SignalRow.created_seq,
        SignalRow.change_seq,
        SignalRow.record,
    ).where(col(SignalRow.id).in_(ids))
    signals = session.execute(stmt).all()
    have, _ = peers.received_keys(session, [(s[0], "signal", s[1], s[2]) for s in signals])
    now = utcnow()
    rows = [
        {
            "origin": origin,
            "kind": "signal",
            "rid": uid,
            "version": version,
            "digest": record_digest(record).hex(),
            "received_from": sender,
            "log_idx": created_seq if created_seq is not None else change_seq,
            "created_at": now,
        }
        for origin, uid, version, sender, created_seq, change_seq, record in signals
        if (origin, "signal", uid, version) not in have
    ]
    peers.add_received(session, rows)


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
