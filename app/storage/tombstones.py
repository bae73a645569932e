"""Retraction tombstones: retractions kept for signals this node does not hold (issue 9)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlmodel import Session, col

from app.storage.models import TombstoneRow
from app.storage.peers import select_in

_TABLE = TombstoneRow.__table__  # type: ignore[attr-defined]


def tombstones_for(
    session: Session, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(origin, uid) -> the retraction record, for the keys that have a tombstone."""
    grouped: dict[str, set[str]] = {}
    for origin, uid in keys:
        grouped.setdefault(origin, set()).add(uid)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    # Per origin on the primary key: a row-value IN would scan the table on SQLite. Which
    # exist is asked on the driver; only those are loaded (most pages have none).
    for origin, uid_set in grouped.items():
        uids = [
            uid
            for (uid,) in select_in(
                session, _TABLE, ("uid",), {"origin": origin}, "uid", sorted(uid_set)
            )
        ]
        for i in range(0, len(uids), 500):
            stmt = select(TombstoneRow).where(
                col(TombstoneRow.origin) == origin, col(TombstoneRow.uid).in_(uids[i : i + 500])
            )
            for row in session.execute(stmt).scalars():
                out[(row.origin, row.uid)] = row.record
    return out


def add_tombstones(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(TombstoneRow), rows)
