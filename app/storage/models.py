"""SQLModel tables. Alembic migrations in `migrations/` must produce exactly these.

Timestamps are timezone-aware UTC (`UTCDateTime`). JSON columns are JSONB on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
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
    # Text: a vpdq value is one line per video frame (migration i14a).
    value: str = Field(sa_column=Column(Text, nullable=False))
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
    # Log index of the signal's first appearance, kept when a retraction moves `change_seq` on:
    # the StopNCII route needs it to tell whether a consumer ever held the signal. Null when the
    # row arrived already retracted (no consumer can have held it here).
    created_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
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
    # Indexed: federation pages follow it to find feedback to route (services/sync.py).
    change_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, index=True))
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


# The entry kinds read back by kind (the newest `config` at start, a node's own key rotations
# for its descriptor, the OPRF key epochs): a partial index holds just those, so finding one is
# an index search, not a walk over the whole log (2.2 s per descriptor request and 20 s at
# start-up, under the sequencer lock, at 5M entries), while the appends of every other kind,
# the log's bulk, pay nothing for it. A query uses it only with this exact condition beside its
# `kind = ?` (SQLite matches the index's WHERE term by term): `logscan.of_kind`.
LOOKED_UP_KINDS = ("config", "key.rotated", "oprf_keys")
LOOKED_UP_KINDS_SQL = "kind IN (" + ", ".join(f"'{k}'" for k in LOOKED_UP_KINDS) + ")"


class LogEntryRow(SQLModel, table=True):
    """One leaf of the exchange log. `data` is the RFC 8785 canonical JSON of the entry."""

    __tablename__ = "log_entry"
    __table_args__ = (
        Index(
            "ix_log_entry_looked_up_kind",
            "kind",
            "idx",
            sqlite_where=text(LOOKED_UP_KINDS_SQL),
            postgresql_where=text(LOOKED_UP_KINDS_SQL),
        ),
    )

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


# --- federation ----------------------------------------------------------------------------


class PeerRow(SQLModel, table=True):
    """A peer node we federate with: its pinned key, what we share with it, and sync status.

    A removed peer keeps its row (with `removed_at`) so the log and the records it sent stay
    explainable; it can no longer authenticate and is no longer pulled from or sent to.
    """

    __tablename__ = "peer"

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    origin: str = Field(sa_column=Column(String(253), nullable=False, unique=True))
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    verifier_key: str = Field(sa_column=Column(String(512), nullable=False))
    policy: dict[str, Any] = _json(dict)
    added_at: datetime = _ts()
    updated_at: datetime = _ts()
    removed_at: datetime | None = _ts(nullable=True)
    # Pull state: `cursor` is a position in the peer's log; stored with the records it covers.
    cursor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    remote_size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_attempt: datetime | None = _ts(nullable=True)
    last_success: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failures: int = 0
    records_received: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    records_refused: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    records_delivered: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # One past the highest change_seq of ours logged as `delivered` to this peer: re-serving
    # older rows (a re-pull of after=0) is not logged again, so a peer cannot grow our log.
    delivered_upto: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # Witnessing of OUR log by this peer: the size it last cosigned (the `old` we send next).
    witness_size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    witness_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class NonceRow(SQLModel, table=True):
    """An RFC 9421 nonce seen from `keyid`, kept until `expires_at` (Unix seconds)."""

    __tablename__ = "http_nonce"

    keyid: str = Field(sa_column=Column(String(255), primary_key=True))
    nonce: str = Field(sa_column=Column(String(256), primary_key=True))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))


class WitnessStateRow(SQLModel, table=True):
    """As a witness: the latest checkpoint of `origin`'s log we cosigned."""

    __tablename__ = "witness_state"

    origin: str = Field(sa_column=Column(String(253), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = _ts()


class CosignatureRow(SQLModel, table=True):
    """A peer's cosignature line on one of OUR checkpoints."""

    __tablename__ = "cosignature"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(sa_column=Column(String(253), primary_key=True))
    line: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts()


class EquivocationRow(SQLModel, table=True):
    """Evidence that a log signed two histories: the checkpoint we cosigned and the new one."""

    __tablename__ = "equivocation"

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    origin: str = Field(sa_column=Column(String(253), nullable=False, index=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    cosigned_note: str = Field(sa_column=Column(Text, nullable=False))
    conflicting_note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts()


class ReceivedRecordRow(SQLModel, table=True):
    """A record accepted from a peer, for idempotent apply: one row per (origin, kind, id,
    version), looked up only by origin, kind and id. `digest` is the SHA-256 of the canonical
    record, kept for the operator (a restricted record's log entry is a commitment that names
    no digest); nothing reads the table by it, so it has no index.

    An open (green/clear) signal that created or replaced its signal row has no row here while
    that row exists: the signal row (origin, uid, version, received_from, change_seq = its
    `received` entry, which names the sender and digest) is its receipt. Purging the signal
    writes the row (`repos.purge_before`). Rows written before that change stay as they are."""

    __tablename__ = "received_record"
    __table_args__ = (
        UniqueConstraint("origin", "kind", "rid", "version", name="uq_received_record"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    origin: str = Field(sa_column=Column(String(253), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    rid: str = Field(sa_column=Column(String(64), nullable=False))
    version: int = Field(default=1, sa_column=Column(BigInteger, nullable=False))
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    received_from: str = Field(sa_column=Column(String(253), nullable=False))
    log_idx: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _ts()


class StopNCIIPageRow(SQLModel, table=True):
    """One FetchHashes page served to a feed key: which log range it covered and when.

    The unmodified python-threatexchange StopNCII client stores a `Withdrawn` record as an
    active hash (it tests the wrong field), so the route sends a withdrawal only to a key that
    provably received the signal as active, which these rows prove. `set_ts` is the page's
    `nextSetTimestamp`, unique per key, so a consumer resuming from it resumes exactly at
    `end_seq`. `walk` names the chain of pages a consumer followed from its first, fresh
    fetch: only pages of the chain it resumes count, since a consumer that starts over has
    started with an empty store.
    """

    __tablename__ = "stopncii_page"

    key_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    set_ts: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    walk: int = Field(sa_column=Column(BigInteger, nullable=False))
    start_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    # The log size read after the page's scan: a change at or past it was not visible to it.
    log_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    issued_at: datetime = _ts()

    __table_args__ = (Index("ix_stopncii_page_walk_end", "key_id", "walk", "end_seq"),)


class RosterRow(SQLModel, table=True):
    """A federation roster version this node accepted (see app/federation/roster.py)."""

    __tablename__ = "roster"

    version: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    # The document exactly as received (signatures included), RFC 8785 JSON text.
    document: str = Field(sa_column=Column(Text, nullable=False))
    accepted_at: datetime = _ts()


class LeaseRow(SQLModel, table=True):
    """A named lease one process of the node holds at a time (e.g. "pull": the pull loops).

    `expires_ms` is wall-clock milliseconds; a holder renews well before it, and any process
    may take a lease whose expiry has passed (its holder died or hung). See services/lease.py.
    """

    __tablename__ = "lease"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    holder: str = Field(sa_column=Column(String(200), nullable=False))
    expires_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Bumped on every change of holder: lets a holder tell it lost the lease in between.
    generation: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class RateBucketRow(SQLModel, table=True):
    """A token bucket per API key, shared by every worker of the node (app/services/ratelimit.py).

    `tokens` as of `updated` (seconds since the epoch); refilled lazily by the statement that
    spends from it, so the row is written only when a worker takes a lease of tokens.
    """

    __tablename__ = "rate_bucket"

    key_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    updated: float = Field(sa_column=Column(Float, nullable=False))
    granted: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class SeenReportRow(SQLModel, table=True):
    """One `seen` report per (API key, signal): repeated matches never add feedback records."""

    __tablename__ = "seen_report"

    key_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    signal_origin: str = Field(sa_column=Column(String(253), primary_key=True))
    signal_uid: str = Field(sa_column=Column(String(64), primary_key=True))


class TombstoneRow(SQLModel, table=True):
    """A retraction received for a signal this node does not hold (yet).

    Verified against the origin's key before it is kept, and kept so that a relay serving the
    original record later cannot bring the retracted signal back (services/sync.py): the
    signal then arrives already retracted.
    """

    __tablename__ = "retraction_tombstone"

    origin: str = Field(sa_column=Column(String(253), primary_key=True))
    uid: str = Field(sa_column=Column(String(64), primary_key=True))
    record: dict[str, Any] = _json(dict)
    received_from: str = Field(sa_column=Column(String(253), nullable=False))
    created_at: datetime = _ts()


class PeerKeyRow(SQLModel, table=True):
    """A key a peer rotated away from (app/services/rekey.py): its records signed before the
    rotation still verify."""

    __tablename__ = "peer_key"

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    origin: str = Field(sa_column=Column(String(253), nullable=False, index=True))
    key_id: str = Field(sa_column=Column(String(64), nullable=False))
    verifier_key: str = Field(sa_column=Column(String(512), nullable=False))
    retired_at: datetime = _ts()


class ImportProgressRow(SQLModel, table=True):
    """How far `signet import` got through one file (keyed by the SHA-256 of its bytes).

    Written in the same transaction as each batch of signals it imported, so after a crash the
    row and the signals agree: a re-run seeks to `offset` and continues (docs/operating.md)."""

    __tablename__ = "import_progress"

    digest: str = Field(sa_column=Column(String(64), primary_key=True))
    # The file's name as given, for `signet import --status`; never its contents.
    name: str = Field(sa_column=Column(String(1024), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    # Byte offset just past the last line whose batch committed, and that line's number.
    byte_offset: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    lines: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    duplicate: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    rejected: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    skipped: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    started_at: datetime = _ts()
    updated_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)
