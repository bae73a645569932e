"""Retraction tombstones: retractions kept for signals this node does not hold (issue 9)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlmodel import Session, col

from app.storage.models import TombstoneRow


def tombstones_for(
    session: Session, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(origin, uid) -> the retraction record, for the keys that have a tombstone."""
    wanted = list(set(keys))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        stmt = select(TombstoneRow).where(
            tuple_(col(TombstoneRow.origin), col(TombstoneRow.uid)).in_(chunk)
        )
        for row in session.execute(stmt).scalars():
            out[(row.origin, row.uid)] = row.record
    return out


def add_tombstones(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(TombstoneRow), rows)
