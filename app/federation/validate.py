"""One validation path for every signed record, ours or a peer's. Pure.

`POST /v1/signals` builds a record body from checked input; a peer hands us a record it signed.
Both go through `check_signal` / `check_retraction` / `check_feedback` here before anything is
stored, logged or relayed, so a record a peer sends is held to exactly the rules our own API
applies: known keys only, the signal vocabulary (type, categories, indicators, opinion), ranges
(confidence 0..100, version, hop limit), canonical value and attrs, bounded strings and a bounded
record size, and times that parse and convert to UTC on every engine (no OverflowError from
`9999-12-31T23:59:59-05:00`).

A failure raises `RecordInvalid(field, reason)`. Reasons never quote more than a short prefix of
what was sent, so a refusal can be logged without storing a peer's payload verbatim.

Signatures and audience routing are checked elsewhere (`app/crypto/records`, `audience`); this
module only answers "is this a well-formed v1 record".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from app.crypto.canonical import canonical_json
from app.errors import InvalidInput, InvalidSignal, SignetError
from app.federation.audience import MAX_EXCLUDED, MAX_HOPS, is_origin
from app.signals.types import Canonical, canonicalize
from app.signals.types.web import URL_CANON
from app.signals.vocab import Opinion, Verdict, validate_categories, validate_indicators

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "MAX_REASON_CHARS",
    "MAX_VALIDITY",
    "CheckedSignal",
    "RecordInvalid",
    "SharedChecks",
    "check_canonical_size",
    "check_feedback",
    "check_record_size",
    "check_retraction",
    "check_signal",
]

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
"""Canonical size bound of one record: a vpdq signal of 10,000 frames is about 0.8 MiB; the
other types are a few KiB, bounded field by field."""
MAX_REASON_CHARS = 1000  # as RetractIn / FeedbackIn
MAX_ATTRS_BYTES = 4 * 1024  # spec/signet-1.md [SIG-3]
MAX_VALIDITY = timedelta(days=5 * 365)  # as POST /v1/signals
# Slack for validity measured from the record's own valid_from (the origin's clock, rounded).
_VALIDITY_SLACK = timedelta(days=2)
_MAX_PEERS = 64
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SIGNATURE_FIELDS = ("origin", "key_id", "signature")
_SIGNATURE_KEYS = frozenset(_SIGNATURE_FIELDS)
_SIGNAL_KEYS = frozenset(
    {
        "kind",
        "v",
        "id",
        "version",
        "type",
        "value",
        "attrs",
        "categories",
        "indicators",
        "opinion",
        "confidence",
        "reviewed",
        "valid_from",
        "valid_until",
        "audience",
    }
)
# A signed signal record has exactly these keys: `_keys` has nothing else to find then.
_SIGNED_SIGNAL_KEYS = _SIGNAL_KEYS | _SIGNATURE_KEYS
# The fields of a signal record that a page's records typically share (one submission, one
# policy): what `SharedChecks` checks once per distinct combination.
_SHARED_FIELDS = (
    "categories",
    "indicators",
    "opinion",
    "confidence",
    "reviewed",
    "valid_from",
    "valid_until",
    "audience",
)
_RETRACTION_KEYS = frozenset({"kind", "v", "signal", "reason", "time"})
_FEEDBACK_KEYS = frozenset({"kind", "v", "id", "signal", "verdict", "time"})
_FEEDBACK_OPTIONAL = frozenset({"reason"})
_VERDICTS = frozenset(v.value for v in Verdict)
_OPINIONS = frozenset(o.value for o in Opinion)


class RecordInvalid(InvalidInput):
    """A record that is not a well-formed v1 record; `field` names where."""


@dataclass(frozen=True, slots=True)
class _Shared:
    categories: tuple[str, ...]
    indicators: tuple[str, ...]
    opinion: str
    confidence: int
    valid_from: datetime
    valid_until: datetime


class SharedChecks:
    """A memo for `check_signal` over the records of one page (or one batch).

    The records a peer sends in one page mostly share their vocabulary, times and audience
    (`_SHARED_FIELDS`): checking those once per distinct combination instead of once per
    record leaves every check in force. The memo is keyed by the exact JSON of those fields
    (orjson: `1`, `1.0` and `true` stay distinct, as do key orders), and holds only what
    PASSED every check of them, so a record whose shared fields equal a cached combination
    passes those checks exactly as it would have; any other record is checked in full, in
    the usual order, so its refusal reason is unchanged. Use one per page: its size is
    bounded by the number of records checked with it."""

    __slots__ = ("_passed",)

    def __init__(self) -> None:
        self._passed: dict[tuple[frozenset[str], bytes], _Shared] = {}

    @staticmethod
    def key(
        record: Mapping[str, Any], extra: frozenset[str]
    ) -> tuple[frozenset[str], bytes] | None:
        try:
            return extra, orjson.dumps([record.get(name) for name in _SHARED_FIELDS])
        except (TypeError, ValueError):  # not plain JSON (huge int, bad string...): no memo
            return None


@dataclass(frozen=True, slots=True)
class CheckedSignal:
    """What a valid signal record says, parsed (times in UTC)."""

    canon: Canonical
    categories: list[str]
    indicators: list[str]
    opinion: str
    confidence: int
    valid_from: datetime
    valid_until: datetime


_QUOTED = re.compile(r"'[^']*'")


# Signal attributes derived from the value by newer canonical forms; see check_signal.
_DERIVED_ATTRS = frozenset({"fold", "registrable"})


def _unquoted(reason: str) -> str:
    """A vocabulary error's reason without the value it quotes: a refusal is logged, and what a
    peer put in a field (free text in an indicator, say) must not reach our log."""
    return _QUOTED.sub("(value not shown)", reason)[:300]


def _keys(record: Mapping[str, Any], required: frozenset[str], optional: frozenset[str]) -> None:
    present = record.keys() - _SIGNATURE_KEYS
    missing = required - present
    if missing:
        raise RecordInvalid(sorted(missing)[0], "required")
    extra = present - required - optional
    if extra:
        raise RecordInvalid("record", f"{len(extra)} unknown field(s)")
    if record.get("v") != 1:
        raise RecordInvalid("v", "must be 1")


# A vpdq value holds one line per video frame (at most 10,000, about 850 kB); it alone may
# exceed the general record limit, up to this.
VPDQ_MAX_RECORD_BYTES = 1024 * 1024


def check_record_size(record: Mapping[str, Any], max_bytes: int) -> bytes:
    """Refuse a record whose canonical form is larger than `max_bytes` (vpdq signals:
    `VPDQ_MAX_RECORD_BYTES`, if larger); returns that canonical form, for callers that need it
    again (a received record's digest and log entry: app/services/sync.py)."""
    try:
        canonical = canonical_json(record if type(record) is dict else dict(record))
    except SignetError:
        raise RecordInvalid("record", "not canonical JSON") from None
    check_canonical_size(record, canonical, max_bytes)
    return canonical


def check_canonical_size(record: Mapping[str, Any], canonical: bytes, max_bytes: int) -> None:
    """`check_record_size` for a caller that has the record's canonical bytes already."""
    if record.get("kind") == "signal" and record.get("type") == "vpdq":
        max_bytes = max(max_bytes, VPDQ_MAX_RECORD_BYTES)
    if len(canonical) > max_bytes:
        raise RecordInvalid("record", f"{len(canonical)} bytes, more than the {max_bytes} allowed")


def _int(record: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RecordInvalid(name, f"must be an integer in {low}..{high}")
    return value


def _id(value: object, name: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise RecordInvalid(name, "must be an id of 1..64 characters [A-Za-z0-9_-]")
    return value


def parse_time(value: object, name: str) -> datetime:
    """An RFC 3339 time with an offset, as an aware UTC datetime; never OverflowError."""
    if not isinstance(value, str) or len(value) > 40:
        raise RecordInvalid(name, "must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordInvalid(name, "must be an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise RecordInvalid(name, "must include a time zone")
    try:
        # 9999-12-31T23:59:59-05:00 is past datetime.max in UTC.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise RecordInvalid(name, "out of range") from None


def _reason(record: Mapping[str, Any], *, required: bool) -> None:
    reason = record.get("reason")
    if reason is None and not required:
        return
    if not isinstance(reason, str) or not reason or len(reason) > MAX_REASON_CHARS:
        raise RecordInvalid("reason", f"must be a string of 1..{MAX_REASON_CHARS} characters")


def _audience(record: Mapping[str, Any]) -> None:
    audience = record.get("audience")
    if not isinstance(audience, Mapping):
        raise RecordInvalid("audience", "must be an object")
    if set(audience) - {"tlp", "peers", "hops", "exclude"}:
        raise RecordInvalid("audience", "unknown field")
    if audience.get("tlp") not in ("red", "amber", "green", "clear"):
        raise RecordInvalid("audience.tlp", "must be red, amber, green or clear")
    _int(audience, "hops", 0, MAX_HOPS)
    peers = audience.get("peers", [])
    if not isinstance(peers, list) or len(peers) > _MAX_PEERS:
        raise RecordInvalid("audience.peers", f"must be a list of at most {_MAX_PEERS} origins")
    if not all(is_origin(p) for p in peers):
        raise RecordInvalid("audience.peers", "must name origins such as ngo.example")
    if peers != sorted(set(peers)):
        raise RecordInvalid("audience.peers", "must be sorted and unique")
    if audience.get("tlp") == "amber" and not peers:
        raise RecordInvalid("audience.peers", "an amber record names its peers")
    # Origins the signal's origin keeps it away from at every hop (issue 9, see audience.py).
    exclude = audience.get("exclude", [])
    if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDED:
        raise RecordInvalid("audience.exclude", f"must be a list of at most {MAX_EXCLUDED} origins")
    if not all(is_origin(p) for p in exclude) or exclude != sorted(set(exclude)):
        raise RecordInvalid("audience.exclude", "must name origins, sorted and unique")


def check_signal(
    record: Mapping[str, Any],
    *,
    extra_categories: frozenset[str] = frozenset(),
    max_bytes: int | None = DEFAULT_MAX_RECORD_BYTES,
    memo: SharedChecks | None = None,
) -> CheckedSignal:
    """Check a signal record (signed or a body about to be signed). `max_bytes=None`: the
    caller already checked the size (`check_record_size`). `memo`: the checks of the fields
    records share, done once per distinct combination (see `SharedChecks`)."""
    if max_bytes is not None:
        check_record_size(record, max_bytes)
    if record.keys() == _SIGNED_SIGNAL_KEYS:  # all it may hold (`_keys` would find nothing)
        if record.get("v") != 1:
            raise RecordInvalid("v", "must be 1")
    else:
        _keys(record, _SIGNAL_KEYS, frozenset())
    if record.get("kind") != "signal":
        raise RecordInvalid("kind", "must be signal")
    _id(record.get("id"), "id")
    _int(record, "version", 1, 2**31 - 1)
    attrs = record.get("attrs")
    if not isinstance(attrs, dict):
        raise RecordInvalid("attrs", "must be an object")
    type_ = record.get("type")
    if not isinstance(type_, str):
        raise RecordInvalid("type", "must be a string")
    key = None if memo is None else memo.key(record, extra_categories)
    shared = None if key is None else memo._passed.get(key)  # type: ignore[union-attr]
    key_id, domain, quality = attrs.get("key_id"), attrs.get("domain"), attrs.get("quality")
    subdomains = attrs.get("subdomains")
    categories: list[str] = []
    indicators: list[str] = []
    try:
        canon = canonicalize(
            type_,
            record.get("value"),
            # Low-quality PDQ is a submitter's explicit choice; the record carries its quality.
            quality=quality if isinstance(quality, int) and not isinstance(quality, bool) else None,
            allow_low_quality=True,
            key_id=key_id if isinstance(key_id, str) else None,
            domain=domain if isinstance(domain, str) else None,
            subdomains=subdomains if type_ == "domain" and isinstance(subdomains, bool) else None,
        )
        if shared is None:
            categories = validate_categories(record.get("categories"), extra_categories)
            indicators = validate_indicators(record.get("indicators"))
    except InvalidSignal as exc:
        raise RecordInvalid(exc.field or "value", _unquoted(exc.reason)) from None
    if canon.value != record.get("value"):
        raise RecordInvalid("value", "not in canonical form")
    _check_attrs_size(attrs)
    expected = dict(canon.extra)
    if type_ == "url" and attrs.get("canon") == URL_CANON:
        # The hashed value does not say which canonical form made it; the publisher's attrs
        # do (app/signals/types/web.py), and only the current form may be named.
        expected["canon"] = URL_CANON
    # Attributes derived from the value (keyword `fold`, url/domain `registrable`) may be
    # absent: records published before they existed do not carry them.
    expected = {k: v for k, v in expected.items() if k not in _DERIVED_ATTRS or k in attrs}
    if attrs != expected:
        # Only what the type defines (quality, key_id, domain), exactly as canonicalized.
        raise RecordInvalid("attrs", "must hold only the type's canonical attributes")
    if shared is None:
        shared = _check_shared(record, categories, indicators)
        if key is not None:
            memo._passed[key] = shared  # type: ignore[union-attr]
    return CheckedSignal(
        canon=canon,
        categories=list(shared.categories),
        indicators=list(shared.indicators),
        opinion=shared.opinion,
        confidence=shared.confidence,
        valid_from=shared.valid_from,
        valid_until=shared.valid_until,
    )


def _check_shared(
    record: Mapping[str, Any], categories: list[str], indicators: list[str]
) -> _Shared:
    """The checks of `_SHARED_FIELDS`, after the value's: categories and indicators (already
    validated by the caller) sorted and unique, opinion, confidence, reviewed, times,
    audience. Reads nothing else of the record (`SharedChecks` relies on it)."""
    if categories != record.get("categories"):
        raise RecordInvalid("categories", "must be sorted and unique")
    if indicators != record.get("indicators"):
        raise RecordInvalid("indicators", "must be sorted and unique")
    opinion = record.get("opinion")
    if opinion not in _OPINIONS:
        known = ", ".join(sorted(_OPINIONS))
        raise RecordInvalid("opinion", f"unknown opinion; known: {known}")
    confidence = _int(record, "confidence", 0, 100)
    if not isinstance(record.get("reviewed"), bool):
        raise RecordInvalid("reviewed", "must be true or false")
    valid_from = parse_time(record.get("valid_from"), "valid_from")
    valid_until = parse_time(record.get("valid_until"), "valid_until")
    if valid_until <= valid_from:
        raise RecordInvalid("valid_until", "must be after valid_from")
    if valid_until > valid_from + MAX_VALIDITY + _VALIDITY_SLACK:
        raise RecordInvalid("valid_until", "must be within 5 years of valid_from")
    _audience(record)
    return _Shared(
        categories=tuple(categories),
        indicators=tuple(indicators),
        opinion=str(opinion),
        confidence=confidence,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def _check_attrs_size(attrs: dict[str, Any]) -> None:
    """spec [SIG-3]: `attrs` is at most 4 KiB of canonical JSON."""
    if not attrs:
        return  # `{}`: most types have no attributes
    try:
        size = len(canonical_json(attrs))
    except SignetError:
        raise RecordInvalid("attrs", "not canonical JSON") from None
    if size > MAX_ATTRS_BYTES:
        raise RecordInvalid("attrs", f"{size} bytes, more than the {MAX_ATTRS_BYTES} allowed")


def _signal_ref(record: Mapping[str, Any], keys: frozenset[str]) -> Mapping[str, Any]:
    ref = record.get("signal")
    if not isinstance(ref, Mapping) or set(ref) != keys:
        raise RecordInvalid("signal", f"must be an object with exactly {sorted(keys)}")
    if not is_origin(ref.get("origin")):
        raise RecordInvalid("signal.origin", "must be an origin such as ngo.example")
    _id(ref.get("id"), "signal.id")
    return ref


def check_retraction(
    record: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> datetime:
    """Check a retraction record; returns its time in UTC."""
    check_record_size(record, max_bytes)
    _keys(record, _RETRACTION_KEYS, frozenset())
    if record.get("kind") != "retraction":
        raise RecordInvalid("kind", "must be retraction")
    ref = _signal_ref(record, frozenset({"origin", "id", "version"}))
    _int(ref, "version", 1, 2**31 - 1)
    _reason(record, required=True)
    return parse_time(record.get("time"), "time")


def check_feedback(
    record: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> datetime:
    """Check a feedback record; returns its time in UTC."""
    check_record_size(record, max_bytes)
    _keys(record, _FEEDBACK_KEYS, _FEEDBACK_OPTIONAL)
    if record.get("kind") != "feedback":
        raise RecordInvalid("kind", "must be feedback")
    _id(record.get("id"), "id")
    _signal_ref(record, frozenset({"origin", "id"}))
    if record.get("verdict") not in _VERDICTS:
        raise RecordInvalid("verdict", "unknown verdict")
    _reason(record, required=False)
    return parse_time(record.get("time"), "time")
