"""Wire formats of the sync protocol: a page of records and the notify body. Pure.

`GET /federation/v1/records?after=<cursor>&limit=<n>` answers a `RecordsPage`:

    {"records": [{"hops": 1, "record": {...signed record...}}, ...],
     "next": 42, "checkpoint": "<signed tlog-checkpoint note>", "has_more": false}

Each record travels in an envelope whose `hops` is unsigned (see `audience` for its meaning);
the record inside is byte-for-byte what its origin signed. `next` is a position in the
sender's log: ask `after=next` for the following page.

`POST /federation/v1/notify` carries a `Notify`: `{"origin": ..., "size": n, "checkpoint": ...}`.

Parsing is strict because the input comes from another node: unknown or missing keys, wrong
types, duplicate object keys (two parsers could read different values), NaN / Infinity and
oversized input raise `MalformedPage`, never KeyError, TypeError or RecursionError.
Signatures are not checked here; `app/crypto` does that on each record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app import gcpause
from app.federation.audience import is_origin
from app.federation.errors import MalformedPage

__all__ = [
    "MAX_CHECKPOINT_CHARS",
    "MAX_PAGE_BYTES",
    "MAX_PAGE_RECORDS",
    "Notify",
    "RecordEnvelope",
    "RecordsPage",
]

MAX_PAGE_RECORDS = 1000
MAX_PAGE_BYTES = 8 * 1024 * 1024
MAX_CHECKPOINT_CHARS = 64 * 1024
_MAX_NOTIFY_BYTES = 128 * 1024
_RECORD_STRING_FIELDS = ("origin", "key_id", "signature")


def _reject_constant(name: str) -> Any:
    raise MalformedPage(f"JSON constant {name} is not allowed")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # built in C; a page has thousands of objects
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedPage(f"duplicate JSON key {key!r}")
            seen.add(key)
    return out


_NOT_COMPACT: Any = object()


def _load_compact(data: str | bytes) -> Any:
    """The value of `data` when `data` is exactly orjson's own encoding of what orjson parses
    from it, else `_NOT_COMPACT` (then the strict parser below decides, and words any refusal).

    Pages are written compact (`RecordsPage.to_json`), and parsing one with the duplicate-key
    hook called for every object cost about a twentieth of applying it. orjson parses in C but
    keeps the last of two equal keys; a text that is exactly orjson's encoding of the parsed
    value has no duplicate key (a dropped member would be missing from the encoding), no NaN
    or Infinity (orjson refuses them) and nothing the strict parser reads otherwise: for such a
    text both parsers give equal values. Anything else (another spelling, spaces, escapes
    written differently, floats, non-UTF-8, deep nesting, a duplicate) takes the strict path."""
    try:
        value = orjson.loads(data)
        raw = data.encode() if isinstance(data, str) else data
        if orjson.dumps(value) == raw:
            return value
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, UnicodeEncodeError):
        pass
    return _NOT_COMPACT


def _load(data: str | bytes, limit: int) -> dict[str, Any]:
    if not isinstance(data, str | bytes):
        raise MalformedPage("body must be JSON text")
    if len(data) > limit:
        raise MalformedPage(f"body larger than {limit} bytes")
    value = _load_compact(data)
    if value is _NOT_COMPACT:
        try:
            value = json.loads(
                data, object_pairs_hook=_unique_object, parse_constant=_reject_constant
            )
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, deep nesting
            raise MalformedPage(f"body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise MalformedPage("body must be a JSON object")
    return value


def _exact_keys(obj: Mapping[str, Any], keys: frozenset[str], what: str) -> None:
    if set(obj) != keys:
        missing = sorted(keys - set(obj))
        extra = sorted(set(obj) - keys)
        raise MalformedPage(f"{what}: missing {missing}, unexpected {extra}")


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MalformedPage(f"{what} must be an integer >= {minimum}")
    return value


def _checkpoint(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_CHECKPOINT_CHARS:
        raise MalformedPage(f"checkpoint must be a note of 1..{MAX_CHECKPOINT_CHARS} characters")
    return value


@dataclass(frozen=True, slots=True)
class RecordEnvelope:
    """A signed record as handed over, with the unsigned count of transfers it has made."""

    record: dict[str, Any]
    hops: int

    def to_dict(self) -> dict[str, Any]:
        return {"hops": self.hops, "record": self.record}

    @classmethod
    def from_dict(cls, obj: Any, index: int = 0) -> RecordEnvelope:
        # The envelope's name is built only for a refusal (a page holds a thousand).
        if not isinstance(obj, dict):
            raise MalformedPage(f"records[{index}] must be an object")
        if obj.keys() != _ENVELOPE_KEYS:
            _exact_keys(obj, _ENVELOPE_KEYS, f"records[{index}]")
        hops = obj["hops"]
        if type(hops) is not int or hops < 1:
            hops = _int(hops, f"records[{index}].hops", minimum=1)
        record = obj["record"]
        if not isinstance(record, dict):
            raise MalformedPage(f"records[{index}].record must be an object")
        for name in _RECORD_STRING_FIELDS:
            value = record.get(name)
            if not isinstance(value, str) or not value:
                raise MalformedPage(f"records[{index}].record.{name} must be a non-empty string")
        return cls(record, hops)


_ENVELOPE_KEYS = frozenset({"hops", "record"})


@dataclass(frozen=True, slots=True)
class RecordsPage:
    """One answer to a pull: records oldest first, the cursor to continue from, a checkpoint."""

    records: list[RecordEnvelope]
    next: int
    checkpoint: str
    has_more: bool

    def to_json(self) -> str:
        return json.dumps(
            {
                "records": [e.to_dict() for e in self.records],
                "next": self.next,
                "checkpoint": self.checkpoint,
                "has_more": self.has_more,
            },
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, data: str | bytes, *, max_bytes: int = MAX_PAGE_BYTES) -> RecordsPage:
        # A page is thousands of small objects, all alive until it is applied: collecting
        # while building them only walks them again and again (app/gcpause.py).
        with gcpause.paused():
            return cls._from_json(data, max_bytes)

    @classmethod
    def _from_json(cls, data: str | bytes, max_bytes: int) -> RecordsPage:
        obj = _load(data, max_bytes)
        _exact_keys(obj, frozenset({"records", "next", "checkpoint", "has_more"}), "page")
        records = obj["records"]
        if not isinstance(records, list):
            raise MalformedPage("records must be a list")
        if len(records) > MAX_PAGE_RECORDS:
            raise MalformedPage(f"a page holds at most {MAX_PAGE_RECORDS} records")
        has_more = obj["has_more"]
        if not isinstance(has_more, bool):
            raise MalformedPage("has_more must be a boolean")
        if has_more and not records:
            # An empty page that claims more would make a client loop without progress.
            raise MalformedPage("has_more with no records")
        return cls(
            records=[RecordEnvelope.from_dict(r, i) for i, r in enumerate(records)],
            next=_int(obj["next"], "next"),
            checkpoint=_checkpoint(obj["checkpoint"]),
            has_more=has_more,
        )

    def check_progress(self, after: int) -> None:
        """Raise `MalformedPage` unless this page, asked with `after`, moves the cursor on
        (or, when empty, keeps it)."""
        if self.next < after or (self.records and self.next == after):
            raise MalformedPage(f"cursor went from {after} to {self.next}")


@dataclass(frozen=True, slots=True)
class Notify:
    """A peer tells us its log grew to `size`; we answer by pulling."""

    origin: str
    size: int
    checkpoint: str

    def to_json(self) -> str:
        return json.dumps(
            {"origin": self.origin, "size": self.size, "checkpoint": self.checkpoint},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> Notify:
        obj = _load(data, _MAX_NOTIFY_BYTES)
        _exact_keys(obj, frozenset({"origin", "size", "checkpoint"}), "notify")
        origin = obj["origin"]
        if not is_origin(origin):
            raise MalformedPage("origin must be a lowercase origin name")
        size = _int(obj["size"], "size")
        checkpoint = _checkpoint(obj["checkpoint"])
        # A tlog-checkpoint's second line is the tree size; the two must agree.
        lines = checkpoint.split("\n")
        if len(lines) < 3 or lines[1] != str(size):
            raise MalformedPage("checkpoint tree size does not match size")
        return cls(origin=origin, size=size, checkpoint=checkpoint)
