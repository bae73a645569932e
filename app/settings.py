"""Node settings, read from `SIGNET_*` environment variables (and `.env` if present).

Every setting has a safe default so `make run` works on a fresh machine; an unusable value makes
`get_settings()` raise ConfigError with one line per bad variable, and the node refuses to start.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretBytes, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.errors import ConfigError

_ORIGIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_KEY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIGNET_", env_file=".env", extra="ignore", validate_default=True
    )

    origin: str = Field("signet.localhost", description="This node's name in the federation.")
    data_dir: Path = Field(Path("data"), description="Node key and the default SQLite database.")
    database_url: str = Field("", description="SQLAlchemy URL; default: SQLite under data_dir.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str = Field("", description="URL peers reach this node at; default from host/port.")
    log_level: str = "info"
    log_format: str = Field("text", description="`text` or `json` (one object per line).")

    # Identifier keys: `id=base64key,id2=base64key`. The node needs only the ids (to refuse
    # identifier hashes made under a key the federation does not use); the CLI needs the keys.
    identifier_keys: Annotated[dict[str, SecretBytes], NoDecode] = Field(default_factory=dict)
    default_identifier_key: str = ""

    validity_days: dict[str, int] = Field(
        default_factory=dict, description="Per-type default validity overrides, JSON."
    )
    extra_categories: Annotated[frozenset[str], NoDecode] = frozenset()
    max_batch: int = Field(1000, ge=1, le=100_000)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    retention_days: int = Field(30, ge=0, description="Purge retracted/expired signals after.")
    checkpoint_interval: float = Field(5.0, gt=0, description="Seconds between checkpoints.")
    expire_interval: float = Field(
        60.0, gt=0, description="Seconds between expiry rounds (each logs `applied` receipts)."
    )
    index_poll_interval: float = Field(0.5, gt=0, description="Seconds between index refreshes.")
    clock_skew: int = Field(60, ge=0, le=600, description="Tolerated peer clock skew, seconds.")
    sync_interval: float = Field(30.0, gt=0, description="Seconds between background pulls.")
    background: bool = Field(True, description="Run checkpoint, purge and sync loops.")
    group_commit: bool = Field(
        True, description="Concurrent writers of a process share one transaction (services/tx)."
    )
    # None (unset): `signet serve` turns it on when it runs more than one worker, so that no
    # worker holds a private copy of the index unless the operator asked for one.
    pdq_shared_base: bool | None = Field(
        None,
        description="Keep the PDQ and vPDQ frame index bases in data_dir/index, one copy mapped "
        "by all workers. Unset: on when `signet serve` runs more than one worker.",
    )
    pdq_layout: Literal["multi-index", "compact"] = Field(
        "multi-index",
        description="PDQ and vPDQ frame index bases: 'multi-index' (3.1x the raw codes, the "
        "fastest) or 'compact' (1.13x; every query scans the codes' halves, 2.6x slower at 100M "
        "codes). Both exact (docs/scaling.md, 'PDQ index layouts').",
    )
    # Limits on what a peer can make us hold or wait for (docs/security.md, "Threat model: peers").
    # 1 MiB: a vpdq signal of 10,000 frames (the type's limit) is about 0.8 MiB; every other
    # type is a few KiB at most, bounded field by field (attrs 4 KiB, vocabularies, hex values).
    max_record_bytes: int = Field(
        1024 * 1024, ge=1024, le=8 * 1024 * 1024, description="Largest signed record, bytes."
    )
    max_page_bytes: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, description="Largest sync page read from a peer, bytes."
    )
    peer_deadline: float = Field(
        30.0, gt=0, le=600, description="Total seconds for one outbound call to a peer."
    )
    peer_io_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds one connect or read to a peer may take."
    )
    peer_requests_per_minute: int = Field(
        600, ge=1, description="Federation requests one peer may make per minute."
    )
    lease_ttl: float = Field(
        6.0,
        ge=0.5,
        le=300,
        description="Seconds a dead pull-lease holder keeps it (services/lease.py).",
    )

    # Identifier OPRF (docs/identifiers.md). A key holder loads its share files; a member node
    # loads the public epoch files (the first is the current epoch). Comma-separated paths.
    oprf_share_files: str = Field("", description="Key-holder share files (secret, mode 0600).")
    oprf_epoch_files: str = Field("", description="Public OPRF epoch files this node serves.")
    oprf_holder_limit: int = Field(
        60_000, ge=1, description="Holder: evaluations per minute per member node."
    )
    oprf_key_limit: int = Field(
        20_000, ge=1, description="Member: OPRF evaluations per minute per API key."
    )

    # Federation roster (docs/federation.md, "Roster"): where to read it, and the trust root
    # that version 1 must be signed by (steward verifier keys, comma-separated, and a quorum).
    roster_url: str = Field("", description="Roster URL (http/https) or file path; empty: none.")
    roster_stewards: str = Field("", description="Trusted steward verifier keys, comma-separated.")
    roster_threshold: int = Field(1, ge=1, description="Steward signatures a roster needs.")
    roster_refresh: float = Field(60.0, gt=0, description="Seconds between roster refreshes.")

    # Limits for clients and strangers (docs/security.md, "Threat model: clients and strangers").
    max_pdq_threshold: int = Field(
        48, ge=0, le=256, description="Largest PDQ threshold a match query may ask for."
    )
    max_matches_per_query: int = Field(
        100, ge=1, le=100_000, description="Matches returned per query; more sets `truncated`."
    )
    rate_limit: int = Field(
        6000, ge=0, description="Requests per minute per API key, all workers; 0 turns it off."
    )

    @field_validator("origin")
    @classmethod
    def _origin(cls, v: str) -> str:
        if len(v) > 253 or not _ORIGIN.match(v):
            raise ValueError("must be a lowercase DNS-like name such as ngo.example")
        return v

    @field_validator("identifier_keys", mode="before")
    @classmethod
    def _identifier_keys(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        keys: dict[str, bytes] = {}
        for part in filter(None, (p.strip() for p in v.split(","))):
            key_id, sep, b64 = part.partition("=")
            if not sep or not _KEY_ID.match(key_id):
                raise ValueError("expected id=base64key[,id=base64key]; ids are [a-z0-9._-]")
            try:
                key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"key {key_id!r} is not valid base64") from None
            if len(key) < 32:
                raise ValueError(f"key {key_id!r} must be at least 32 bytes")
            keys[key_id] = key
        return keys

    @field_validator("extra_categories", mode="before")
    @classmethod
    def _extra_categories(cls, v: Any) -> Any:
        if isinstance(v, str):
            return frozenset(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v.lower() not in {"text", "json"}:
            raise ValueError("must be text or json")
        return v.lower()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        if v.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be debug, info, warning or error")
        return v.lower()

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'signet.db'}"
        if self.database_url.startswith("postgres://"):
            # The spelling many hosting providers and libpq tools hand out.
            self.database_url = "postgresql://" + self.database_url[len("postgres://") :]
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "SIGNET_DATABASE_URL must be a sqlite:///path or postgresql://user@host/db URL"
            )
        if self.database_url.startswith("postgresql://"):
            # psycopg 3 is the PostgreSQL driver we ship.
            self.database_url = "postgresql+psycopg://" + self.database_url[len("postgresql://") :]
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if self.roster_url and not self.roster_stewards:
            raise ValueError("roster_url needs roster_stewards (the stewards' verifier keys)")
        if self.default_identifier_key and self.default_identifier_key not in self.identifier_keys:
            raise ValueError("default_identifier_key names no key in identifier_keys")
        for type_, days in self.validity_days.items():
            if days < 1:
                raise ValueError(f"validity_days[{type_}] must be at least 1")
        return self

    def validity(self, signal_type: str, default: timedelta) -> timedelta:
        days = self.validity_days.get(signal_type)
        return timedelta(days=days) if days else default

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "SIGNET_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else ""
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {msg}" if name else msg)
        raise ConfigError("unusable settings:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
