"""Engines and transactions.

Every write transaction takes the *sequencer lock* first: the single row of `log_head`, locked
`FOR UPDATE` on PostgreSQL, and SQLite's write lock via `BEGIN IMMEDIATE`. Holding it for the
whole transaction serialises writers across threads, workers and processes, so the exchange log
never forks or leaves a gap, duplicate checks cannot race, and the log index of a change is a
gap-free, commit-ordered sequence that workers can follow to keep their match indexes in step.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from app.storage.models import LogHead

_WRITE = "signet_write"
LOG_SIZE = "signet_log_size"


_HEAD = LogHead.__table__.c  # type: ignore[attr-defined]
_LOCK_LOG_HEAD = select(_HEAD.size).where(_HEAD.id == 1).with_for_update()


class WriteTx:
    """One write transaction holding the sequencer lock (`Database.write_tx`).

    Its SQL runs on `conn`, a Core connection. The ORM `session` is opened on that connection
    only when first asked for: a transaction that only appends to the log (the log writes go
    through `cursor()`) then never pays for a Session, which was most of a small write's cost.
    """

    def __init__(self, db: Database, conn: Connection, log_size: int) -> None:
        self.db = db
        self.conn = conn
        # The log size read under the lock; LogAppender starts from it and keeps it current.
        self.log_size = log_size
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            # "rollback_only": the session joins the connection's transaction and never commits
            # it; `Database.write_tx` does, after flushing the session.
            self._session = Session(
                bind=self.conn, expire_on_commit=False, join_transaction_mode="rollback_only"
            )
            self._session.info[LOG_SIZE] = self.log_size
        return self._session

    @property
    def has_session(self) -> bool:
        return self._session is not None

    def set_log_size(self, size: int) -> None:
        self.log_size = size
        if self._session is not None:
            self._session.info[LOG_SIZE] = size

    def cursor(self) -> Any:
        """A DBAPI cursor in this transaction, for statements SQLAlchemy need not process."""
        return self.conn.connection.cursor()

    def _flush(self) -> None:
        if self._session is not None:
            self._session.flush()

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()  # leaves the connection's transaction alone


class Database:
    """One node's database: an engine, a read session and a serialised write session."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, echo=echo)
        else:
            self.engine = create_engine(
                url,
                echo=echo,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=10,
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
            )
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        # The lock statement as this engine's driver takes it: run on the DBAPI cursor, it skips
        # SQLAlchemy's per-statement work on every write transaction.
        lock = _LOCK_LOG_HEAD.compile(
            dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}
        )
        self._lock_sql = str(lock)
        # The exchange log's right edge as of a size this process committed; see
        # app.storage.log.LogAppender, which alone reads and sets it.
        self.log_frontier: tuple[int, dict[tuple[int, int], bytes]] | None = None

    @property
    def write_engine(self) -> Engine:
        """The engine whose transactions take SQLite's write lock at BEGIN (BEGIN IMMEDIATE),
        without the sequencer lock (for migrations)."""
        return self._write_engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; it never commits."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction holding the sequencer lock; commits on success, rolls back on error."""
        with self.write_tx() as wt:
            yield wt.session

    @contextmanager
    def write_tx(self) -> Iterator[WriteTx]:
        """`write()` on a Core connection, the ORM session opened only if used (`WriteTx`)."""
        with self._write_engine.connect() as conn, conn.begin():
            cur = conn.connection.cursor()
            try:
                cur.execute(self._lock_sql)
                row = cur.fetchone()
            finally:
                cur.close()
            if row is None:
                raise RuntimeError("log_head row missing: run `signet db upgrade`")
            wt = WriteTx(self, conn, int(row[0]))
            try:
                yield wt
                wt._flush()
            finally:
                wt._close()

    @contextmanager
    def write_unlogged(self) -> Iterator[Session]:
        """A short write transaction for bookkeeping that is no log change (no sequencer
        lock), committed on success. On SQLite it takes the write lock up front (BEGIN
        IMMEDIATE, waiting up to busy_timeout): a deferred transaction that reads and then
        writes fails at once with "database is locked" if another writer committed in
        between, which no busy wait covers."""
        with Session(self._write_engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def analyze(self, *tables: str) -> None:
        """Refresh the PostgreSQL planner's statistics of `tables` (a no-op on SQLite).

        For bulk loads: a table that grows from empty within minutes is never analysed by
        autovacuum in time (nor at all where it is off), and with no statistics the planner
        took a bitmap scan of every active signal for each duplicate check, so an import
        slowed as it grew (docs/scaling.md). SQLite's plans for these queries do not depend
        on statistics (their shape is chosen for that), and its ANALYZE could change others.
        """
        if self.is_sqlite or not tables:
            return
        with self.engine.connect() as conn:
            conn.execute(text("ANALYZE " + ", ".join(_identifier(t) for t in tables)))
            conn.commit()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {name!r}")
    return name


def _json_dumps(value: Any) -> str:
    # JSON columns (records, categories, ...) are written on every insert: orjson is ~10x faster
    # than the json module. Stored JSON need not be canonical; signatures cover RFC 8785 bytes
    # computed separately (app.crypto.canonical).
    return orjson.dumps(value).decode()


def _private_sqlite_files(path: Path) -> None:
    """Make the database file (and its -wal, -shm) readable by the node's user only.

    They hold red signal values and the salts of log commitments. SQLite gives -wal and -shm
    the mode of the main file, so creating that one 0600 before SQLite opens it covers all
    three; files left by older versions are tightened here too.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(path.with_name(name), 0o600)


def _wal(cur: Any) -> None:
    """Switch the database to WAL (once set, it stays). On a new file opened by several
    processes at once (hosts started together), the switch answers "database is locked" at
    once to all but one, without waiting on busy_timeout: retry until the one has done it."""
    import sqlite3
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:" and "mode=memory" not in url:
        _private_sqlite_files(Path(parsed.database))
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        # Reuse connections: opening one (and its PRAGMAs) costs more than a whole indexed read.
        # Worker processes are spawned, not forked, so no pooled connection crosses a fork.
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so we can choose BEGIN IMMEDIATE for writers.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        _wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take SQLite's write lock up front: a deferred transaction that later tries to
        # write can fail with SQLITE_BUSY instead of waiting, and two of them could deadlock.
        # Straight to the driver: this runs once per transaction, and going through
        # SQLAlchemy's statement machinery cost as much as the rest of a small write.
        conn.connection.driver_connection.execute(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN"
        )

    return engine
