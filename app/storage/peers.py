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
    every page applied got slower as the table grew. Which of the keys exist is asked on the
    driver (`select_in`); only those rows are loaded as ORM objects (a page of new records
    then costs one small query per 500 ids and no ORM work)."""
    out: dict[tuple[str, str], SignalRow] = {}
    for origin, uids in _by_first(keys).items():
        present = [
            uid
            for (uid,) in select_in(session, _SIGNALS, ("uid",), {"origin": origin}, "uid", uids)
        ]
        for i in range(0, len(present), 500):
            stmt = select(SignalRow).where(
                col(SignalRow.origin) == origin, col(SignalRow.uid).in_(present[i : i + 500])
            )
            for row in session.execute(stmt).scalars():
                out[(row.origin, row.uid)] = row
    return out


_SelectKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...], str, int]
_SELECT_SQL: dict[_SelectKey, str] = {}
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def select_in(
    session: Session,
    table: Any,
    columns: tuple[str, ...],
    equal: dict[str, str],
    in_column: str,
    values: Sequence[str],
) -> list[tuple[Any, ...]]:
    """`SELECT columns FROM table WHERE a = ? AND ... AND in_column IN (?, ...)`, in chunks of
    500 values, on the transaction's DBAPI connection: the same statement SQLAlchemy renders
    for `col.in_(values)` (so the same plan on the same index), without its per-value
    rendering of the expanding parameter, which cost more than the query. For string and
    integer columns (no bind or result processing). The session is flushed first, as the
    ORM's autoflush would before a query."""
    if not values:
        return []
    session.flush()
    conn = session.connection()
    dialect = conn.dialect
    mark = _PLACEHOLDERS.get(dialect.paramstyle)
    if mark is None:  # another driver: let SQLAlchemy render it
        c = table.c
        found: list[tuple[Any, ...]] = []
        for i in range(0, len(values), 500):
            stmt = select(*(c[n] for n in columns)).where(
                *(c[n] == v for n, v in equal.items()), c[in_column].in_(values[i : i + 500])
            )
            found.extend(tuple(r) for r in conn.execute(stmt))
        return found
    quote = dialect.identifier_preparer.quote
    names = tuple(equal)
    fixed = tuple(equal.values())
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(values), 500):
        chunk = values[i : i + 500]
        key = (dialect.name, mark, table.name, columns, names, in_column, len(chunk))
        sql = _SELECT_SQL.get(key)
        if sql is None:
            where = [f"{quote(n)} = {mark}" for n in names]
            where.append(f"{quote(in_column)} IN ({', '.join([mark] * len(chunk))})")
            # Only quoted names from the caller's code and placeholders: values are bound.
            sql = (
                f"SELECT {', '.join(quote(n) for n in columns)} FROM {quote(table.name)}"  # noqa: S608
                f" WHERE {' AND '.join(where)}"
            )
            if len(_SELECT_SQL) < 4096:
                _SELECT_SQL[key] = sql
        cur = conn.connection.cursor()
        try:
            cur.execute(sql, (*fixed, *chunk))
            rows.extend(cur.fetchall())
        finally:
            cur.close()
    return rows


def _by_first(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, set[str]] = {}
    for first, second in keys:
        grouped.setdefault(first, set()).add(second)
    return {k: sorted(v) for k, v in grouped.items()}


# --- received records ------------------------------------------------------------------------

RecordKey = tuple[str, str, str, int]  # origin, kind, id, version


def received_keys(
    session: Session, keys: Sequence[RecordKey]
) -> tuple[set[RecordKey], dict[tuple[str, str], int]]:
    """Those of `keys` that have a received_record row, and for the signals among them the
    highest version with a row, by (origin, id): one indexed `origin = ? AND kind = ? AND rid
    IN (...)` per origin and kind (a row-value IN over all four columns scans the table on
    SQLite), which returns every version of each id anyway.

    An open signal that created or replaced its signal row has no row here: the signal row is
    its receipt (app/services/sync.py, `_Applier._signal`), and `purge_before` writes the row
    when it deletes the signal."""
    wanted = set(keys)
    groups: dict[tuple[str, str], set[str]] = {}
    for origin, kind, rid, _version in wanted:
        groups.setdefault((origin, kind), set()).add(rid)
    found: set[RecordKey] = set()
    newest: dict[tuple[str, str], int] = {}
    for (origin, kind), rid_set in groups.items():
        rows = select_in(
            session,
            _RECEIVED,
            ("rid", "version"),
            {"origin": origin, "kind": kind},
            "rid",
            sorted(rid_set),
        )
        for rid, version in rows:
            key = (origin, kind, str(rid), int(version))
            if key in wanted:
                found.add(key)
            if kind == "signal" and newest.get((origin, key[2]), 0) < key[3]:
                newest[(origin, key[2])] = key[3]
    return found, newest


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
