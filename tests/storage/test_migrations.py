"""`alembic upgrade head` on an empty database gives exactly the models, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import app.storage.models  # noqa: F401
from app.storage import migrate
from app.storage.db import Database


def test_upgrade_head_matches_models(db_url: str) -> None:
    db = Database(db_url)
    migrate.upgrade(db)  # idempotent on an already-migrated database
    assert migrate.is_current(db)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    db.dispose()
    assert diff == []


def test_sequencer_row_exists(db_url: str) -> None:
    db = Database(db_url)
    migrate.upgrade(db)
    with db.write() as session:  # takes the sequencer lock; fails if the row is missing
        assert session is not None
    db.dispose()
