"""Repositories for federation: peers, nonces, witness state, cosignatures, received records.

Each function takes the caller's session; services own the transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from app.storage.bulk import insert_many
from app.storage.models import (
    CosignatureRow,
    EquivocationRow,
    FeedbackRow,
    NonceRow,
    PeerRow,
    ReceivedRecordRow,
    SignalRow,
    WitnessStateRow,
)

# --- peers ---------------------------------------------------------------------------------


def get_peer(session: Session, origin: str, *, removed: bool = False) -> PeerRow | None:
    """The peer named `origin`; a removed one only when `removed` is True."""
    stmt = select(PeerRow).where(col(PeerRow.origin) == origin)
    row: PeerRow | None = session.execute(stmt).scalars().first()
    if row is None or (row.removed_at is not None and not removed):
        return None
    return row


def get_peer_for_update(session: Session, origin: str) -> PeerRow | None:
    """A current peer, read inside a write transaction (which already serialises writers)."""
    return get_peer(session, origin)


def list_peers(session: Session, *, removed: bool = False) -> list[PeerRow]:
    stmt = select(PeerRow).order_by(col(PeerRow.origin))
    if not removed:
        stmt = stmt.where(col(PeerRow.removed_at).is_(None))
    return list(session.execute(stmt).scalars())


def pinned_keys(session: Session) -> dict[str, str]:
    """origin -> verifier key of every current peer."""
    stmt = select(PeerRow.origin, PeerRow.verifier_key).where(  # type: ignore[call-overload]
        col(PeerRow.removed_at).is_(None)
    )
    return {str(o): str(k) for o, k in session.execute(stmt).all()}


# --- nonces --------------------------------------------------------------------------------


def store_nonce(session: Session, keyid: str, nonce: str, expires_at: int) -> bool:
    """Insert the pair; False if it is already there (a replay). Uses a savepoint so a
    duplicate does not spoil the caller's transaction."""
    try:
        with session.begin_nested():
            session.execute(
                insert(NonceRow).values(keyid=keyid, nonce=nonce, expires_at=expires_at)
            )
    except IntegrityError:
        return False
    return True


def nonce_live(session: Session, keyid: str, nonce: str, now: int) -> bool:
    row = session.get(NonceRow, (keyid, nonce))
    return row is not None and row.expires_at >= now


def purge_nonces(session: Session, now: int) -> int:
    result = session.execute(delete(NonceRow).where(col(NonceRow.expires_at) < now))
    return int(getattr(result, "rowcount", 0) or 0)


# --- witnessing ----------------------------------------------------------------------------


def witness_state(session: Session, origin: str) -> WitnessStateRow | None:
    return session.get(WitnessStateRow, origin)


def save_witness_state(session: Session, row: WitnessStateRow) -> None:
    session.merge(row)


def save_cosignature(session: Session, size: int, witness: str, line: str) -> None:
    session.execute(
        delete(CosignatureRow).where(
            col(CosignatureRow.size) == size, col(CosignatureRow.witness) == witness
        )
    )
    session.add(CosignatureRow(size=size, witness=witness, line=line))


def cosignatures(session: Session, size: int) -> list[CosignatureRow]:
    stmt = (
        select(CosignatureRow)
        .where(col(CosignatureRow.size) == size)
        .order_by(col(CosignatureRow.witness))
    )
    return list(session.execute(stmt).scalars())


def latest_cosigned_size(session: Session) -> int | None:
    size = session.execute(select(func.max(CosignatureRow.size))).scalar()
    return int(size) if size is not None else None


def save_equivocation(session: Session, origin: str, size: int, cosigned: str, new: str) -> None:
    session.add(
        EquivocationRow(origin=origin, size=size, cosigned_note=cosigned, conflicting_note=new)
    )


def equivocations(session: Session) -> list[EquivocationRow]:
    return list(
        session.execute(select(EquivocationRow).order_by(col(EquivocationRow.id))).scalars()
    )


# --- records we hold, for pages --------------------------------------------------------------


def signals_changed(session: Session, after: int, upto: int, limit: int) -> list[SignalRow]:
    """Signals whose latest change has a log index in [after, upto), in log order."""
    stmt = (
        select(SignalRow)
        .where(col(SignalRow.change_seq) >= after, col(SignalRow.change_seq) < upto)
        .order_by(col(SignalRow.change_seq))
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def feedback_changed(session: Session, after: int, upto: int, limit: int) -> list[FeedbackRow]:
    stmt = (
        select(FeedbackRow)
        .where(col(FeedbackRow.change_seq) >= after, col(FeedbackRow.change_seq) < upto)
        .order_by(col(FeedbackRow.change_seq))
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def signals_by_keys(
    session: Session, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], SignalRow]:
    """(origin, uid) -> signal row, for the keys that exist.

    One `origin = ? AND uid IN (...)` per origin (and 500 ids), not a row-value
    `(origin, uid) IN (...)`: SQLite answers the latter with a scan of the whole table, so
    every page applied got slower as the table grew."""
    out: dict[tuple[str, str], SignalRow] = {}
    for origin, uids in _by_first(keys).items():
        for i in range(0, len(uids), 500):
            stmt = select(SignalRow).where(
                col(SignalRow.origin) == origin, col(SignalRow.uid).in_(uids[i : i + 500])
            )
            for row in session.execute(stmt).scalars():
                out[(row.origin, row.uid)] = row
    return out


def _by_first(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, set[str]] = {}
    for first, second in keys:
        grouped.setdefault(first, set()).add(second)
    return {k: sorted(v) for k, v in grouped.items()}


# --- received records ------------------------------------------------------------------------

RecordKey = tuple[str, str, str, int]  # origin, kind, id, version


def received_keys(session: Session, keys: Sequence[RecordKey]) -> set[RecordKey]:
    """Those of `keys` already applied: one indexed `origin = ? AND kind = ? AND rid IN (...)`
    per origin and kind (a row-value IN over all four columns scans the table on SQLite)."""
    wanted = set(keys)
    groups: dict[tuple[str, str], set[str]] = {}
    for origin, kind, rid, _version in wanted:
        groups.setdefault((origin, kind), set()).add(rid)
    c = ReceivedRecordRow.__table__.c  # type: ignore[attr-defined]
    found: set[RecordKey] = set()
    for (origin, kind), rid_set in groups.items():
        rids = sorted(rid_set)
        for i in range(0, len(rids), 500):
            stmt = select(c.rid, c.version).where(
                c.origin == origin, c.kind == kind, c.rid.in_(rids[i : i + 500])
            )
            for rid, version in session.connection().execute(stmt):
                key = (origin, kind, str(rid), int(version))
                if key in wanted:
                    found.add(key)
    return found


# One executemany per page on the raw driver (app/storage/bulk.py). Going through
# `session.execute(insert(Model), rows)` ran the ORM's bulk-insert machinery (per-row mapper
# bookkeeping), ~140 us a row at 10k records; a table-level Core insert still spent as much
# as the records' signature checks building each row's parameters.
_RECEIVED = ReceivedRecordRow.__table__  # type: ignore[attr-defined]
_SIGNALS = SignalRow.__table__  # type: ignore[attr-defined]
_FEEDBACK = FeedbackRow.__table__  # type: ignore[attr-defined]


def add_received(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert: the apply path handles thousands of records a second."""
    insert_many(session.connection(), _RECEIVED, rows)


def insert_signals(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Rows must name every column (a table insert applies no model defaults)."""
    insert_many(session.connection(), _SIGNALS, rows)


def insert_feedback(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    insert_many(session.connection(), _FEEDBACK, rows)


def received_from(session: Session, peer: str) -> list[ReceivedRecordRow]:
    stmt = (
        select(ReceivedRecordRow)
        .where(col(ReceivedRecordRow.received_from) == peer)
        .order_by(col(ReceivedRecordRow.id))
    )
    return list(session.execute(stmt).scalars())
