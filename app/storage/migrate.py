"""Run Alembic migrations from code (`signet serve`, `signet db upgrade`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.storage.db import Database

# pg_advisory_xact_lock key serializing migrations on PostgreSQL (any constant of our own).
MIGRATION_LOCK = 0x5369676E65744D67  # b"SignetMg" as a bigint


def _migrations_dir() -> Path:
    """The Alembic scripts: `app/migrations` in an installed wheel (see setup.py), else the
    repository's top-level `migrations/`, their source."""
    packaged = Path(__file__).resolve().parents[1] / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


MIGRATIONS_DIR = _migrations_dir()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`.

    Hosts started together on a new database each migrate it: each read "no schema" and created
    the tables, and all but one failed ("database is locked" on SQLite, a duplicate `pg_type` on
    PostgreSQL). The migration now holds the database's write lock from its first statement
    (SQLite: BEGIN IMMEDIATE, as every writer here; PostgreSQL: a transaction-scoped advisory
    lock), so the others wait, then find the schema current and do nothing."""
    cfg = alembic_config()
    with db.write_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_current(db: Database) -> bool:
    return current_revision(db) == head_revision()
