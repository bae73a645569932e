"""`alembic upgrade head` on an empty database gives exactly the models, on both engines."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import app.storage.models  # noqa: F401
from app.storage import migrate
from app.storage.db import Database

ROOT = Path(__file__).resolve().parents[2]


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


# Each process says it is ready, waits for the `go` file, then migrates: they start together.
_MIGRATE_AT_GO = """
import os, sys, time
from pathlib import Path
from app.storage import migrate
from app.storage.db import Database
db = Database(sys.argv[1])
go = Path(sys.argv[2])
(go.parent / f"ready.{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.005)
migrate.upgrade(db)
db.dispose()
"""


def test_processes_migrating_a_new_database_at_once_all_succeed(
    empty_db_url: str, tmp_path: Path
) -> None:
    """Hosts started together on a new database (docs/scaling.md, Running N hosts) each migrate
    it. All but one failed: "database is locked" on SQLite (the first connection's switch to
    WAL, then the schema's writes), a duplicate `pg_type` row on PostgreSQL (each created the
    tables). Now one migrates and the others wait, then find the schema current."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_AT_GO, empty_db_url, str(go)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    while len(list(tmp_path.glob("ready.*"))) < len(procs):
        assert all(p.poll() is None for p in procs), "a process ended before it was told to go"
        time.sleep(0.01)
    go.touch()
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(" ".join(err.decode(errors="replace").strip().splitlines()[-2:]))
    assert failures == []
    db = Database(empty_db_url)
    try:
        assert migrate.is_current(db)
    finally:
        db.dispose()
