"""Observation 4: the database files and the node key are readable by the node's user only.

`signet.db`, `-wal` and `-shm` hold red signal values and commitment salts. Checked under the
usual umask 022, with which they used to come out 0644. On SQLite (the files) and PostgreSQL
(the data directory and key only).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.services import apikeys
from app.services.node import key_path, open_node
from app.settings import Settings


@pytest.fixture
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_data_dir_0700_and_files_0600(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    node = open_node(settings)
    try:
        apikeys.create(node, "writes something, so the WAL exists", ["read"])
        if settings.is_sqlite:
            db_file = Path(settings.database_url.split("///", 1)[1])
            files = [db_file, *(db_file.with_name(db_file.name + s) for s in ("-wal", "-shm"))]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(key_path(settings)) == 0o600
        assert mode(settings.data_dir) == 0o700
    finally:
        node.db.dispose()


@pytest.mark.usefixtures("umask_022")
def test_loose_files_from_before_are_tightened(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    settings.data_dir.mkdir(mode=0o755, parents=True)
    os.chmod(settings.data_dir, 0o755)
    if settings.is_sqlite:
        db_file = Path(settings.database_url.split("///", 1)[1])
        db_file.parent.mkdir(parents=True, exist_ok=True)
        db_file.touch(mode=0o644)
        os.chmod(db_file, 0o644)
    node = open_node(settings)
    try:
        assert mode(settings.data_dir) == 0o700
        if settings.is_sqlite:
            assert mode(db_file) == 0o600
    finally:
        node.db.dispose()
