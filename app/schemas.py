"""Request and response models of the REST API (one family per resource).

Validation of signal *values* lives in `app.signals`; these models fix the shape of requests,
refuse unknown fields, and name every field in the OpenAPI contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.signals.vocab import TLP, Opinion, Verdict


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


# --- signals -------------------------------------------------------------------------------


class AudienceIn(_In):
    tlp: TLP = Field(TLP.GREEN, description="red: never leaves this node; amber: named peers only")
    peers: list[str] = Field(default_factory=list, max_length=100, description="Peer origins.")
    hops: int = Field(1, ge=0, le=8, description="How many relays a green/clear record may take.")


class SignalIn(_In):
    """One signal to publish. Unknown fields and values are refused."""

    type: str = Field(description="Signal type, e.g. pdq, md5, url, email (see README).")
    value: str = Field(
        max_length=1_000_000,
        description="The value; identifiers as 64-hex HMAC; vpdq one line per frame.",
    )
    quality: int | None = Field(None, ge=0, le=100, description="PDQ quality (required for pdq).")
    allow_low_quality: bool = Field(False, description="Accept a PDQ hash with quality < 50.")
    key_id: str | None = Field(None, description="Identifier key id (identifier types).")
    domain: str | None = Field(None, description="Domain of a pre-hashed url signal.")
    subdomains: bool = Field(
        True, description="domain: also match its subdomains and URLs on them (default)."
    )
    categories: list[str] = Field(min_length=1, max_length=16)
    indicators: list[str] = Field(default_factory=list, max_length=32)
    opinion: Opinion = Opinion.INVESTIGATION_SEED
    confidence: int = Field(50, ge=0, le=100)
    reviewed: bool = Field(False, description="A person confirmed this signal.")
    valid_until: datetime | None = Field(None, description="Default: per type (see README).")
    audience: AudienceIn = Field(default_factory=AudienceIn)


class SignalBatchIn(_In):
    signals: list[Any] = Field(
        description="Up to SIGNET_MAX_BATCH items, each a SignalIn.",
        json_schema_extra={"items": {"$ref": "#/components/schemas/SignalIn"}},
    )


class ItemError(BaseModel):
    field: str
    reason: str


class ItemResult(BaseModel):
    index: int
    status: Literal["created", "duplicate", "rejected"]
    id: str | None = None
    error: ItemError | None = None


class BatchResult(BaseModel):
    created: int
    duplicate: int
    rejected: int
    items: list[ItemResult]


class Audience(BaseModel):
    tlp: TLP
    peers: list[str]
    hops: int


class SignalOut(BaseModel):
    id: str
    origin: str
    version: int
    type: str
    value: str
    attrs: dict[str, Any]
    categories: list[str]
    indicators: list[str]
    opinion: str
    confidence: int
    reviewed: bool
    audience: Audience
    valid_from: datetime
    valid_until: datetime
    status: Literal["active", "retracted", "expired"]
    retracted_at: datetime | None = None
    retract_reason: str | None = None
    received_from: str | None = None
    feedback: dict[str, int]
    feedback_status: str
    record: dict[str, Any] = Field(description="The signed record as published.")


class SignalPage(BaseModel):
    items: list[SignalOut]
    next: str | None = Field(description="Cursor for the next page (pass as `after`), or null.")


class RetractIn(_In):
    reason: str = Field(min_length=1, max_length=1000)


# --- matching ------------------------------------------------------------------------------


class MatchQuery(_In):
    type: str
    value: str = Field(max_length=1_000_000, description="text: at most 65536 characters.")
    threshold: int | None = Field(
        None, ge=0, le=256, description="pdq, vpdq (per frame): bits; text_tlsh: score."
    )
    query_percent: float | None = Field(
        None, ge=0, le=100, description="vpdq: share of the query's frames that must match (80)."
    )
    compared_percent: float | None = Field(
        None, ge=0, le=100, description="vpdq: share of the stored video's frames (default 0)."
    )
    key_id: str | None = None
    report_seen: bool = Field(False, description="Send `seen` feedback for each hit.")
    leet: bool = Field(
        False, description="text/keyword: also read digits and symbols as letters (s3xy = sexy)."
    )


class MatchBatchIn(_In):
    queries: list[Any] = Field(
        description="Up to SIGNET_MAX_BATCH queries, each a MatchQuery.",
        json_schema_extra={"items": {"$ref": "#/components/schemas/MatchQuery"}},
    )


class VideoMatch(BaseModel):
    """How a vpdq query matched one stored video (percentages of distinct usable frames)."""

    query_percent: float
    compared_percent: float
    query_ranges: list[tuple[float, float]] = Field(
        description="Matching stretches of the query video, [first, last] seconds."
    )
    compared_ranges: list[tuple[float, float]] = Field(
        description="Matching stretches of the stored video, [first, last] seconds."
    )


class MatchHit(BaseModel):
    id: str
    origin: str
    type: str
    distance: int | None = None
    categories: list[str]
    indicators: list[str]
    opinion: str
    confidence: int
    reviewed: bool
    valid_until: datetime
    feedback_status: str
    matched: str | None = Field(None, description="For text queries: which rule matched.")
    video: VideoMatch | None = Field(None, description="For vpdq queries.")


class MatchResult(BaseModel):
    index: int
    status: Literal["ok", "rejected"]
    matches: list[MatchHit] = Field(default_factory=list)
    truncated: bool = Field(
        False, description="More matches were found than SIGNET_MAX_MATCHES_PER_QUERY allows."
    )
    error: ItemError | None = None


class MatchBatchResult(BaseModel):
    results: list[MatchResult]


# --- feedback ------------------------------------------------------------------------------


class FeedbackIn(_In):
    signal: str = Field(description="Signal id.")
    origin: str | None = Field(None, description="Signal origin, if the id is ambiguous.")
    verdict: Verdict
    reason: str | None = Field(None, max_length=1000)


class FeedbackOut(BaseModel):
    id: str
    signal: str
    signal_origin: str
    verdict: str
    reason: str | None
    created_at: datetime
    feedback: dict[str, int]
    feedback_status: str


# --- API keys ------------------------------------------------------------------------------

Scope = Literal["submit", "match", "read", "feedback", "admin", "audit", "feed"]


class ApiKeyIn(_In):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1)
    member: bool = Field(False, description="Federation member: may read green public feeds.")


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    member: bool
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself. Shown once; only its hash is stored.")


# --- health --------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
