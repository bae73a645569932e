"""`signet backup` / `signet restore` for SQLite nodes.

The copy is consistent while the node runs: SQLite's online backup API copies pages under a
read transaction, so writers in other workers or processes never see a half-copied database.
The node key files go with it (mode 0600). PostgreSQL nodes use pg_dump / pg_restore instead
(docs/operating.md); these commands say so.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from app.errors import ConfigError
from app.services.keys import RETIRED_FILE
from app.services.locate import sqlite_path
from app.services.node import KEY_FILE
from app.settings import Settings

DB_FILE = "signet.db"
PG_HINT = (
    'PostgreSQL: back up with `pg_dump -Fc "$SIGNET_DATABASE_URL" > signet.dump` and restore '
    "with `pg_restore -d NEWDB signet.dump`, plus the node key files (docs/operating.md)"
)


def backup(settings: Settings, dest: Path) -> Path:
    """Copy the database and key files of the node into the new directory `dest`."""
    db = sqlite_path(settings)
    if db is None:
        raise ConfigError(PG_HINT)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"backup directory {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(dest / DB_FILE)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    for name in (KEY_FILE, RETIRED_FILE):
        if (settings.data_dir / name).is_file():
            shutil.copy2(settings.data_dir / name, dest / name)
            os.chmod(dest / name, 0o600)
    return dest


def restore(settings: Settings, source: Path) -> Path:
    """Put a backup in place as the node's data; refuses to overwrite an existing database."""
    db = sqlite_path(settings)
    if db is None:
        raise ConfigError(PG_HINT)
    if not (source / DB_FILE).is_file() or not (source / KEY_FILE).is_file():
        raise ConfigError(
            f"{source} is not a backup from `signet backup` (no {DB_FILE}/{KEY_FILE})"
        )
    if db.exists() or (settings.data_dir / KEY_FILE).exists():
        raise ConfigError(
            f"a node already lives at {settings.data_dir} (database {db}); restore into an empty "
            "SIGNET_DATA_DIR, or move the old one away first"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source / DB_FILE}?mode=ro", uri=True)
    dst = sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    for name in (KEY_FILE, RETIRED_FILE):
        if (source / name).is_file():
            shutil.copy2(source / name, settings.data_dir / name)
            os.chmod(settings.data_dir / name, 0o600)
    return db
