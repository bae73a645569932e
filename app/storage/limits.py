"""Shared request limits in the node's database: token buckets and once-only `seen` reports.

Each statement is atomic on its own on SQLite and PostgreSQL (one UPDATE, or one INSERT that
does nothing on conflict), so workers and processes sharing the database never double-spend a
token or record a report twice. None of them takes the exchange log's sequencer lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from app.storage.db import Database
from app.storage.models import RateBucketRow, SeenReportRow

_BUCKET = RateBucketRow.__table__  # type: ignore[attr-defined]
_B = _BUCKET.c
_SEEN = SeenReportRow.__table__  # type: ignore[attr-defined]


def _insert(is_sqlite: bool, table: Any) -> Any:
    return (sqlite.insert if is_sqlite else postgresql.insert)(table)


def take_tokens(
    db: Database, key_id: int, want: int, capacity: float, rate: float, now: float
) -> tuple[int, float]:
    """Refill `key_id`'s bucket to `now` and take `want` tokens, or 1, or none if it has < 1.

    Returns (tokens granted, tokens left). A missing bucket starts full.
    """
    with db.engine.begin() as conn:
        conn.execute(
            _insert(db.is_sqlite, _BUCKET)
            .values(key_id=key_id, tokens=capacity, updated=now, granted=0)
            .on_conflict_do_nothing(index_elements=["key_id"])
        )
        elapsed = case((_B.updated < now, literal(now) - _B.updated), else_=0.0)
        refilled = _B.tokens + elapsed * rate
        avail = case((refilled > capacity, capacity), else_=refilled)
        grant = case((avail >= want, want), (avail >= 1, 1), else_=0)
        # Every SET expression reads the row as it was, so `avail` and `grant` agree.
        row = conn.execute(
            update(_BUCKET)
            .where(_B.key_id == key_id)
            .values(
                tokens=avail - grant,
                updated=case((_B.updated < now, now), else_=_B.updated),
                granted=grant,
            )
            .returning(_B.granted, _B.tokens)
        ).one()
    return int(row[0]), float(row[1])


def claim_seen(session: Session, is_sqlite: bool, key_id: int, origin: str, uid: str) -> bool:
    """True the first time `key_id` reports `seen` on the signal, False every later time."""
    # RETURNING, not rowcount: the driver reports -1 for an INSERT ... ON CONFLICT here.
    inserted = session.execute(
        _insert(is_sqlite, _SEEN)
        .values(key_id=key_id, signal_origin=origin, signal_uid=uid)
        .on_conflict_do_nothing()
        .returning(_SEEN.c.key_id)
    ).first()
    return inserted is not None
