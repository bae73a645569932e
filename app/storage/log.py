"""The exchange log's storage: entries, perfect-subtree hashes, checkpoints.

Appends happen inside a write transaction (`Database.write()`), which already holds the
sequencer row, so `LogAppender` can read the head, append and move the head without races.
Proof computation lives in `app.crypto.merkle`; batched node reads for proofs are in
`app.storage.logscan`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlmodel import Session, col

from app.crypto import merkle
from app.storage.db import LOG_SIZE
from app.storage.models import CheckpointRow, LogEntryRow, LogHead, LogNodeRow
from app.storage.types import utcnow

_ENTRY = LogEntryRow.__table__  # type: ignore[attr-defined]
_NODE = LogNodeRow.__table__  # type: ignore[attr-defined]
_HEAD = LogHead.__table__  # type: ignore[attr-defined]
# Built once: SQLAlchemy then reuses their compiled form instead of rebuilding a cache key for a
# new statement object in every write transaction.
_INSERT_ENTRIES = _ENTRY.insert()
_INSERT_NODES = _NODE.insert()
_SET_SIZE = update(_HEAD).where(_HEAD.c.id == 1).values(size=bindparam("new_size"))
_NODE_HASH = select(_NODE.c.hash).where(
    _NODE.c.level == bindparam("level"), _NODE.c.idx == bindparam("idx")
)


class LogAppender:
    """Appends leaves within one write transaction; call `close()` before commit."""

    def __init__(self, session: Session) -> None:
        self._session = session
        # Core statements on the session's connection: the append path runs once per write
        # transaction, and the ORM's per-statement bookkeeping was most of its cost.
        self._conn = session.connection()
        self.start = self.size = log_size(session)
        # Nodes written in this transaction, so consecutive appends need no reads at all.
        self._fresh: dict[tuple[int, int], bytes] = {}
        self._entries: list[dict[str, object]] = []
        self._nodes: list[dict[str, object]] = []

    def _get(self, level: int, index: int) -> bytes:
        cached = self._fresh.get((level, index))
        if cached is not None:
            return cached
        return node_hash(self._session, level, index)  # at most one read per completed level

    def append(self, kind: str, data: bytes, created_at: datetime | None = None) -> int:
        """Append one leaf (its canonical bytes); returns its index."""
        index = self.size
        self._entries.append(
            {
                "idx": index,
                "kind": kind,
                "data": data.decode(),
                "salt": None,
                "created_at": created_at or utcnow(),
            }
        )
        for level, i, h in merkle.nodes_completed_by_append(index, data, self._get):
            self._fresh[(level, i)] = h
            self._nodes.append({"level": level, "idx": i, "hash": h})
        self.size += 1
        return index

    def mark(self) -> tuple[int, int, dict[tuple[int, int], bytes], int, int, object]:
        """This appender's state, to `rewind` to if the work after it is rolled back (a
        savepoint of a group commit, app.services.tx)."""
        info = self._session.info.get(LOG_SIZE)
        return (
            self.start,
            self.size,
            dict(self._fresh),
            len(self._entries),
            len(self._nodes),
            info,
        )

    def rewind(self, mark: tuple[int, int, dict[tuple[int, int], bytes], int, int, object]) -> None:
        """Forget every append since `mark` (their rows went with the savepoint)."""
        self.start, self.size, self._fresh = mark[0], mark[1], mark[2]
        del self._entries[mark[3] :]
        del self._nodes[mark[4] :]
        self._session.info[LOG_SIZE] = mark[5]

    def set_salt(self, index: int, salt: bytes) -> None:
        """Remember the salt of a commitment entry appended in this transaction."""
        self._entries[index - self.start]["salt"] = salt

    def close(self) -> None:
        """Write the buffered entries and nodes and move the head."""
        if self.size == self.start:
            return
        self._conn.execute(_INSERT_ENTRIES, self._entries)
        self._conn.execute(_INSERT_NODES, self._nodes)
        self._conn.execute(_SET_SIZE, {"new_size": self.size})
        self._session.info[LOG_SIZE] = self.size
        self._entries.clear()
        self._nodes.clear()
        self.start = self.size


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
