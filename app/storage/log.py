"""The exchange log's storage: entries, perfect-subtree hashes, checkpoints.

Appends happen inside a write transaction (`Database.write_tx()`), which already holds the
sequencer row, so `LogAppender` can read the head, append and move the head without races.
Proof computation lives in `app.crypto.merkle`; batched node reads for proofs are in
`app.storage.logscan`.
"""

from __future__ import annotations

import weakref
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Dialect, bindparam, delete, literal_column, select, update
from sqlmodel import Session, col

from app.crypto import merkle
from app.storage import logscan
from app.storage.bulk import Prepared
from app.storage.db import LOG_SIZE, WriteTx
from app.storage.models import CheckpointRow, LogEntryRow, LogHead, LogNodeRow
from app.storage.types import utcnow

_ENTRY = LogEntryRow.__table__  # type: ignore[attr-defined]
_NODE = LogNodeRow.__table__  # type: ignore[attr-defined]
_HEAD = LogHead.__table__  # type: ignore[attr-defined]
_NODE_HASH = select(_NODE.c.hash).where(
    _NODE.c.level == bindparam("level"), _NODE.c.idx == bindparam("idx")
)

Frontier = dict[tuple[int, int], bytes]
"""The perfect subtrees on a log's right edge, `(level, index) -> hash`: for size n, one per
set bit k of n, `(k, (n >> k) - 1)`. They are all that an append reads."""


class _Statements:
    """The append path's three writes, compiled once per dialect (`storage.bulk.Prepared`)."""

    def __init__(self, dialect: Dialect) -> None:
        self.entries = Prepared.of(_ENTRY.insert(), dialect)
        self.nodes = Prepared.of(_NODE.insert(), dialect)
        self.size = Prepared.of(
            update(_HEAD)
            .where(_HEAD.c.id == literal_column("1"))
            .values(size=bindparam("new_size")),
            dialect,
        )


_STATEMENTS: weakref.WeakKeyDictionary[Dialect, _Statements] = weakref.WeakKeyDictionary()


def _statements(dialect: Dialect) -> _Statements:
    found = _STATEMENTS.get(dialect)
    if found is None:
        found = _STATEMENTS[dialect] = _Statements(dialect)
    return found


Mark = tuple[int, int, Frontier | None, int, int, int]
# The buffered rows' fields: rows are kept as lists and tuples in this order, not dicts (two
# rows or more per entry, thousands per transaction when a peer's page is applied).
_ENTRY_FIELDS = ("idx", "kind", "data", "salt", "created_at")
_SALT = _ENTRY_FIELDS.index("salt")
_NODE_FIELDS = ("level", "idx", "hash")  # as merkle.nodes_completed_by_append gives them
_TICK = timedelta(microseconds=1)


class LogAppender:
    """Appends leaves within one write transaction; call `close()` before commit, and
    `committed()` after it.

    An append needs the hashes on the log's right edge (its frontier). They are read once per
    transaction, in one query, at the first append, unless this process committed the log at
    exactly the size read under the sequencer lock: then its frontier is remembered
    (`Database.log_frontier`) and nothing is read. The size decides: the log only grows, so
    two logs of one database with the same size are the same log, and any append by another
    process or host since our commit has moved the size.
    """

    def __init__(self, wt: WriteTx) -> None:
        self._wt = wt
        self.start = self.size = wt.log_size
        # The frontier at `size`; None until the first append loads it.
        self._frontier: Frontier | None = None
        self._entries: list[list[Any]] = []  # _ENTRY_FIELDS (a list: the salt is set later)
        self._nodes: list[tuple[int, int, bytes]] = []  # _NODE_FIELDS
        self._last_time: datetime | None = None

    def _load_frontier(self) -> Frontier:
        cached = self._wt.db.log_frontier
        if cached is not None and cached[0] == self.size:
            return dict(cached[1])
        ids = merkle.perfect_node_ids(0, self.size) if self.size else []
        found = logscan.node_hashes(self._wt.conn, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise LookupError(f"log node {missing[0]} missing")
        return found

    def append(self, kind: str, data: bytes) -> int:
        """Append one leaf (its canonical bytes); returns its index.

        Its `created_at` is a clock reading taken now, later than any earlier entry's of this
        appender (one microsecond on if the clock has not moved): TAXII's `added_after` pages
        by these times, and two entries with the same time would let a page boundary between
        them skip one (docs/design-decisions.md)."""
        created_at = utcnow()
        if self._last_time is not None and created_at <= self._last_time:
            created_at = self._last_time + _TICK
        self._last_time = created_at
        frontier = self._frontier
        if frontier is None:
            frontier = self._frontier = self._load_frontier()
        index = self.size
        rows = merkle.nodes_completed_by_append(index, data, lambda lv, i: frontier[(lv, i)])
        self._entries.append([index, kind, data.decode(), None, created_at])
        # The left siblings this leaf completed are inside a bigger subtree now; the biggest
        # subtree it completed joins the right edge.
        for level, i, _h in rows[:-1]:
            del frontier[(level, i - 1)]
        level, i, h = rows[-1]
        frontier[(level, i)] = h
        self._nodes.extend(rows)
        self.size += 1
        return index

    def mark(self) -> Mark:
        """This appender's state, to `rewind` to if the work after it is rolled back (a
        savepoint of a group commit, app.services.tx)."""
        frontier = None if self._frontier is None else dict(self._frontier)
        return (
            self.start,
            self.size,
            frontier,
            len(self._entries),
            len(self._nodes),
            self._wt.log_size,
        )

    def rewind(self, mark: Mark) -> None:
        """Forget every append since `mark` (their rows went with the savepoint)."""
        self.start, self.size, self._frontier = mark[0], mark[1], mark[2]
        del self._entries[mark[3] :]
        del self._nodes[mark[4] :]
        self._wt.set_log_size(mark[5])

    def set_salt(self, index: int, salt: bytes) -> None:
        """Remember the salt of a commitment entry appended in this transaction."""
        self._entries[index - self.start][_SALT] = salt

    def close(self) -> None:
        """Write the buffered entries and nodes and move the head.

        Through the DBAPI cursor: these three statements run in every write transaction, and
        SQLAlchemy's per-statement work cost more than the database's."""
        if self.size == self.start:
            return
        sql = _statements(self._wt.conn.dialect)
        cur = self._wt.cursor()
        try:
            sql.entries.run_values(cur, _ENTRY_FIELDS, self._entries)
            sql.nodes.run_values(cur, _NODE_FIELDS, self._nodes)
            sql.size.run(cur, [{"new_size": self.size}])
        finally:
            cur.close()
        self._wt.set_log_size(self.size)
        self._entries.clear()
        self._nodes.clear()
        self.start = self.size

    def committed(self) -> None:
        """Call after the transaction committed: remember the frontier for the next one."""
        if self._frontier is not None and self.size == self.start:
            self._wt.db.log_frontier = (self.size, dict(self._frontier))


def node_hash(session: Session, level: int, index: int) -> bytes:
    h = (
        session.connection()
        .execute(_NODE_HASH, {"level": level, "idx": index})
        .scalar_one_or_none()
    )
    if h is None:
        raise LookupError(f"log node ({level}, {index}) missing")
    return bytes(h)


def log_size(session: Session) -> int:
    """The log's size; inside a write transaction, as of the sequencer lock plus our appends."""
    size = session.info.get(LOG_SIZE)
    if size is None:
        found = session.connection().execute(select(_HEAD.c.size).where(_HEAD.c.id == 1))
        size = found.scalar_one_or_none()
        if size is None:
            raise RuntimeError("log_head row missing: run `signet db upgrade`")
    return int(size)


def entries(session: Session, start: int, end: int) -> list[LogEntryRow]:
    stmt = (
        select(LogEntryRow)
        .where(col(LogEntryRow.idx) >= start, col(LogEntryRow.idx) < end)
        .order_by(col(LogEntryRow.idx))
    )
    return list(session.execute(stmt).scalars())


def latest_checkpoint(session: Session) -> CheckpointRow | None:
    stmt = select(CheckpointRow).order_by(col(CheckpointRow.size).desc()).limit(1)
    return session.execute(stmt).scalars().first()


def checkpoint_at(session: Session, size: int) -> CheckpointRow | None:
    return session.get(CheckpointRow, size)


def save_checkpoint(session: Session, size: int, root: bytes, note: str) -> None:
    session.execute(delete(CheckpointRow).where(col(CheckpointRow.size) == size))
    session.add(CheckpointRow(size=size, root_hash=root, note=note))
