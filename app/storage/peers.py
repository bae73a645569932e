"""Repositories for federation: peers, nonces, witness state, cosignatures, received records.

Each function takes the caller's session; services own the transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

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
    """(origin, uid) -> signal row, for the keys that exist."""
    wanted = list(set(keys))
    out: dict[tuple[str, str], SignalRow] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        stmt = select(SignalRow).where(tuple_(col(SignalRow.origin), col(SignalRow.uid)).in_(chunk))
        for row in session.execute(stmt).scalars():
            out[(row.origin, row.uid)] = row
    return out


# --- received records ------------------------------------------------------------------------

RecordKey = tuple[str, str, str, int]  # origin, kind, id, version


def received_keys(session: Session, keys: Sequence[RecordKey]) -> set[RecordKey]:
    """Those of `keys` already applied."""
    found: set[RecordKey] = set()
    wanted = list(set(keys))
    for i in range(0, len(wanted), 400):
        chunk = wanted[i : i + 400]
        stmt = select(
            ReceivedRecordRow.origin,  # type: ignore[call-overload]
            ReceivedRecordRow.kind,
            ReceivedRecordRow.rid,
            ReceivedRecordRow.version,
        ).where(
            tuple_(
                col(ReceivedRecordRow.origin),
                col(ReceivedRecordRow.kind),
                col(ReceivedRecordRow.rid),
                col(ReceivedRecordRow.version),
            ).in_(chunk)
        )
        found.update((str(o), str(k), str(r), int(v)) for o, k, r, v in session.execute(stmt).all())
    return found


# Table-level inserts executed on the session's connection: one executemany per page. Going
# through `session.execute(insert(Model), rows)` ran the ORM's bulk-insert machinery (per-row
# mapper bookkeeping), ~140 us a row at 10k records: more than the Ed25519 verify of the record.
_INSERT_RECEIVED = ReceivedRecordRow.__table__.insert()  # type: ignore[attr-defined]
_INSERT_SIGNALS = SignalRow.__table__.insert()  # type: ignore[attr-defined]
_INSERT_FEEDBACK = FeedbackRow.__table__.insert()  # type: ignore[attr-defined]


def add_received(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert through Core: the apply path handles thousands of records a second."""
    if rows:
        session.connection().execute(_INSERT_RECEIVED, list(rows))


def insert_signals(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Rows must name every column (a table insert applies no model defaults)."""
    if rows:
        session.connection().execute(_INSERT_SIGNALS, list(rows))


def insert_feedback(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(_INSERT_FEEDBACK, list(rows))


def received_from(session: Session, peer: str) -> list[ReceivedRecordRow]:
    stmt = (
        select(ReceivedRecordRow)
        .where(col(ReceivedRecordRow.received_from) == peer)
        .order_by(col(ReceivedRecordRow.id))
    )
    return list(session.execute(stmt).scalars())
