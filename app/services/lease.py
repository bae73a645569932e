"""Leases in the database: which one process of a node runs a job (e.g. the pull loops).

Every worker of every host of a node shares one database, so a row there is the one place they
all see. A lease is a row `(name, holder, expires_ms, generation)`; one statement takes it,
atomically, when it is free, expired, or already ours:

    UPDATE lease SET holder = me, expires_ms = now + ttl, generation = generation + (holder != me)
     WHERE name = :name AND (holder = me OR expires_ms < now)

(and an INSERT ... ON CONFLICT DO NOTHING the first time). The same SQL runs on SQLite and
PostgreSQL. A PostgreSQL advisory lock would free itself the moment its connection died, but
SQLite has nothing like it, and a row behaves the same on both, shows who holds the lease, and
survives a connection pool recycling connections under it.

Timing: the holder renews every ttl/3. It treats the lease as its own only until ttl·2/3 after
the start of its last successful renewal, while others may take it only after the full ttl has
passed since that renewal, so two holders never overlap as long as clocks differ by less than
ttl/3 (hosts run NTP; the default ttl is 6 s). A holder killed with SIGKILL is replaced within
one ttl plus one renewal period (about 8 s by default); a holder that stops cleanly releases
the lease and is replaced at the next renewal round of another process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from app.storage.db import Database

log = logging.getLogger("signet.lease")

_TAKE = text(
    "UPDATE lease SET holder = :me, expires_ms = :expires,"
    " generation = generation + CASE WHEN holder = :me THEN 0 ELSE 1 END"
    " WHERE name = :name AND (holder = :me OR expires_ms < :now)"
)
_CREATE = text(
    "INSERT INTO lease (name, holder, expires_ms, generation)"
    " VALUES (:name, :me, :expires, 1) ON CONFLICT (name) DO NOTHING"
)
_RELEASE = text("UPDATE lease SET expires_ms = 0 WHERE name = :name AND holder = :me")
_WHO = text("SELECT holder, expires_ms, generation FROM lease WHERE name = :name")
_ALL = text("SELECT name, holder, expires_ms, generation FROM lease ORDER BY name")


@dataclass(frozen=True)
class LeaseState:
    """A lease row as stored: what /metrics and GET /v1/admin/leases show an operator."""

    name: str
    holder: str  # host:pid:random of the process that last took it
    expires_ms: int  # 0 once released by a clean stop
    generation: int  # times it changed holder


def all_leases(db: Database) -> list[LeaseState]:
    with db.engine.connect() as conn:
        rows = conn.execute(_ALL).all()
    return [LeaseState(str(n), str(h), int(e), int(g)) for n, h, e, g in rows]


def holder_id() -> str:
    """host:pid:random, so a restarted process (same pid) is a new holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, db: Database, name: str, *, ttl: float = 6.0) -> None:
        self.db = db
        self.name = name
        self.ttl = ttl
        self.me = holder_id()
        self._valid_until = 0.0  # time.monotonic() until which we may act as the holder
        # BEGIN IMMEDIATE on SQLite (waits for the write lock instead of failing); plain on PG.
        self._engine = db.engine.execution_options(signet_write=True)

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    def try_acquire(self) -> bool:
        """Take or renew the lease; True if we hold it now."""
        started = time.monotonic()
        now_ms = int(time.time() * 1000)
        params = {
            "me": self.me,
            "name": self.name,
            "now": now_ms,
            "expires": now_ms + int(self.ttl * 1000),
        }
        with self._engine.begin() as conn:
            got = conn.execute(_TAKE, params).rowcount == 1
            if not got:
                got = conn.execute(_CREATE, params).rowcount == 1
        self._valid_until = started + self.ttl * 2 / 3 if got else 0.0
        return got

    def release(self) -> None:
        """Give the lease up now (clean shutdown), so another process takes it at once."""
        if self._valid_until == 0.0:
            return
        self._valid_until = 0.0
        with self._engine.begin() as conn:
            conn.execute(_RELEASE, {"name": self.name, "me": self.me})

    def current(self) -> tuple[str, int, int] | None:
        """(holder, expires_ms, generation) as stored, or None before anyone took it."""
        with self.db.engine.connect() as conn:
            row = conn.execute(_WHO, {"name": self.name}).first()
        return (str(row[0]), int(row[1]), int(row[2])) if row else None

    def keep(self, stop: threading.Event, on_change: Callable[[bool], None]) -> None:
        """Loop until `stop`: take or renew every ttl/3, calling `on_change(held)` on changes."""
        was = False
        while not stop.is_set():
            try:
                now = self.try_acquire()
            except Exception:  # database trouble: the lease lapses by itself; retry
                log.exception("lease %s: renewal failed", self.name)
                now = self.held
            if now != was:
                log.info("lease %s %s by %s", self.name, "taken" if now else "lost", self.me)
                on_change(now)
                was = now
            stop.wait(self.ttl / 3)
        if was:
            try:
                self.release()
            except Exception:
                log.exception("lease %s: release failed", self.name)
