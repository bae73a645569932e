"""Shared fixtures. Every storage and API test runs on SQLite and on PostgreSQL.

PostgreSQL: SIGNET_TEST_POSTGRES_URL, or the default server at 127.0.0.1:5432 if it answers.
Each pytest-xdist worker gets its own database, created once and truncated between tests.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.services.node import Node, open_node
from app.settings import Settings, load_settings
from app.storage import migrate
from app.storage.db import Database

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_admin_url() -> str | None:
    url = os.environ.get("SIGNET_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return DEFAULT_PG
    except OSError:
        return None


PG_ADMIN_URL = _pg_admin_url()


def pytest_report_header() -> str:
    return f"signet: PostgreSQL tests {'on ' + PG_ADMIN_URL if PG_ADMIN_URL else 'skipped'}"


def _psycopg(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


@contextmanager
def scratch_pg_database(name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database `name` on the test server, dropped on the way out;
    yields its URL. One a crashed run left behind is dropped first. Callers put the pid in
    `name`, which keeps concurrent test sessions on one server out of each other's databases."""
    if PG_ADMIN_URL is None:
        pytest.skip("no PostgreSQL server (set SIGNET_TEST_POSTGRES_URL)")
    admin = make_url(_psycopg(PG_ADMIN_URL))
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this xdist worker's own."""
    with scratch_pg_database(f"signet_test_{worker_id}_{os.getpid()}") as url:
        db = Database(url)
        migrate.upgrade(db)
        db.dispose()
        yield url


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            if r[0] != "alembic_version"
        ]
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(text("INSERT INTO log_head (id, size) VALUES (1, 0)"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'signet.db'}"
    url: str = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path, worker_id: str) -> Iterator[str]:
    """A database with nothing in it yet (no schema), of this test's own, on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with scratch_pg_database(f"signet_empty_{worker_id}_{os.getpid()}") as url:
        yield url


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "origin": "test.example",
            "data_dir": tmp_path / "data",
            "database_url": db_url,
            "background": False,
            "index_poll_interval": 0.1,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def node(settings: Settings) -> Iterator[Node]:
    n = open_node(settings)
    yield n
    n.db.dispose()


@pytest.fixture
def client(settings: Settings, node: Node) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings, node=node), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def make_key(node: Node) -> Callable[..., dict[str, str]]:
    """Create an API key with the given scopes; returns the Authorization header."""
    from app.services import apikeys

    def make(*scopes: str, member: bool = False) -> dict[str, str]:
        created = apikeys.create(node, "test", list(scopes), member)
        return {"Authorization": f"Bearer {created.key}"}

    return make


@pytest.fixture
def auth(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    """A key with every platform scope."""
    return make_key("submit", "match", "read", "feedback")


@pytest.fixture
def collector_on() -> Iterator[None]:
    """The cyclic garbage collector on for the test, as it was afterwards (app/gcpause.py)."""
    import gc

    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()
