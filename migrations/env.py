"""Alembic environment: the URL comes from the caller (app.storage.migrate) or SIGNET_* settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import app.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from app.settings import get_settings
    from app.storage.db import Database

    db = Database(get_settings().database_url)
    with db.engine.connect() as conn:
        _run(conn)
        conn.commit()
    db.dispose()


run_migrations_online()
