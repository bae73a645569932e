"""SQLModel tables. Alembic migrations in `migrations/` must produce exactly these.

Timestamps are timezone-aware UTC (`UTCDateTime`). JSON columns are JSONB on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.storage.types import BigIntId, JSONType, UTCDateTime, utcnow


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_column=Column(UTCDateTime(), nullable=nullable, index=index),
    )


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSONType, nullable=False))


class SignalRow(SQLModel, table=True):
    """A signal: ours (received_from is None) or received from a peer, in canonical form."""

    __tablename__ = "signal"
    __table_args__ = (
        UniqueConstraint("origin", "uid", name="uq_signal_origin_uid"),
        Index("ix_signal_match_key_status", "match_key", "status"),
        Index("ix_signal_type_status", "type", "status"),
        Index("ix_signal_status_valid_until", "status", "valid_until"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    uid: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    origin: str = Field(sa_column=Column(String(253), nullable=False))
    version: int = 1
    type: str = Field(sa_column=Column(String(32), nullable=False))
    value: str = Field(sa_column=Column(String(512), nullable=False))
    # Exact-match key: type, the identifier key id where there is one, and the canonical value.
    match_key: str = Field(sa_column=Column(String(640), nullable=False))
    attrs: dict[str, Any] = _json(dict)
    categories: list[str] = _json(list)
    indicators: list[str] = _json(list)
    opinion: str = Field(sa_column=Column(String(32), nullable=False))
    confidence: int = 50
    reviewed: bool = False
    tlp: str = Field(sa_column=Column(String(8), nullable=False))
    audience_peers: list[str] = _json(list)
    audience_hops: int = 0
    valid_from: datetime = _ts()
    valid_until: datetime = _ts()
    status: str = Field(default="active", sa_column=Column(String(16), nullable=False))
    retracted_at: datetime | None = _ts(nullable=True)
    retract_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    retraction: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONType, nullable=True)
    )
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    # Log index of the latest change: a gap-free, commit-ordered sequence (see storage/db.py).
    change_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, index=True))
    received_from: str | None = Field(default=None, sa_column=Column(String(253), nullable=True))
    hops: int = 0
    submitted_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    feedback_counts: dict[str, int] = _json(dict)
    feedback_status: str = Field(default="none", sa_column=Column(String(16), nullable=False))
    record: dict[str, Any] = _json(dict)


class FeedbackRow(SQLModel, table=True):
    """One verdict on a signal, by this node's users or received from a peer."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("origin", "uid", name="uq_feedback_origin_uid"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    uid: str = Field(sa_column=Column(String(64), nullable=False))
    origin: str = Field(sa_column=Column(String(253), nullable=False))
    signal_origin: str = Field(sa_column=Column(String(253), nullable=False))
    signal_uid: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    verdict: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts()
    received_from: str | None = Field(default=None, sa_column=Column(String(253), nullable=True))
    submitted_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    change_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    record: dict[str, Any] = _json(dict)


class ApiKeyRow(SQLModel, table=True):
    """An API key. Only its SHA-256 is stored; the key itself is shown once at creation."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    name: str = Field(sa_column=Column(String(128), nullable=False))
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    scopes: list[str] = _json(list)
    # Operator-marked federation member: may read `green` records through public feeds.
    member: bool = False
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)
    last_used_at: datetime | None = _ts(nullable=True)


class LogHead(SQLModel, table=True):
    """The log's single sequencer row: locked by every write transaction."""

    __tablename__ = "log_head"

    id: int = Field(default=1, primary_key=True)
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class LogEntryRow(SQLModel, table=True):
    """One leaf of the exchange log. `data` is the RFC 8785 canonical JSON of the entry."""

    __tablename__ = "log_entry"

    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    data: str = Field(sa_column=Column(Text, nullable=False))
    # Salt of the commitment in entries about red/amber records; never served by the API.
    salt: bytes | None = Field(default=None, sa_column=Column(LargeBinary(32), nullable=True))
    created_at: datetime = _ts()


class LogNodeRow(SQLModel, table=True):
    """Hash of a perfect subtree: level 0 = leaf hashes; (level, idx) covers 2**level leaves."""

    __tablename__ = "log_node"

    level: int = Field(primary_key=True)
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A signed checkpoint (C2SP tlog-checkpoint note) of the log at `size`."""

    __tablename__ = "checkpoint"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts()
