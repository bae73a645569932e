"""What the console shows beside the services' own answers: overview figures, record
verification results and readable summaries of log entries and checkpoints. Read-only."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.crypto.keys import VerifierKey
from app.crypto.note import parse_note
from app.crypto.records import verify_record
from app.errors import SignetError
from app.schemas import SignalOut
from app.services import peers
from app.services import signals as signal_service
from app.services.log import LogEntry
from app.services.node import Node
from app.storage import console as store
from app.storage import repos
from app.storage.models import FeedbackRow
from app.storage.types import utcnow


@dataclass
class Overview:
    totals: dict[str, int]
    by_type: Counter[str]
    by_category: Counter[str]
    by_status: Counter[str]
    by_tlp: Counter[str]
    by_origin: Counter[str]
    log_kinds: Counter[str]
    published_per_day: Counter[str]
    received_per_day: Counter[str]
    feedback_per_day: dict[str, Counter[str]]


def overview(node: Node, days: int) -> Overview:
    since = (utcnow() - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    with node.db.read() as session:
        counts = store.signal_counts(session)
        return Overview(
            totals=store.totals(session),
            by_type=counts["type"],
            by_category=counts["category"],
            by_status=counts["status"],
            by_tlp=counts["tlp"],
            by_origin=counts["origin"],
            log_kinds=store.log_kinds(session),
            published_per_day=store.local_signals_per_day(session, since),
            received_per_day=store.received_signals_per_day(session, since),
            feedback_per_day=store.feedback_per_day(session, since),
        )


def search_signals(node: Node, q: str) -> list[SignalOut]:
    with node.db.read() as session:
        return [signal_service.to_out(r) for r in store.search_signals(session, q[:512])]


def feedback_of(node: Node, uid: str, origin: str) -> list[FeedbackRow]:
    with node.db.read() as session:
        return store.feedback_for(session, uid, origin)


def retraction_record(node: Node, uid: str, origin: str) -> dict[str, Any] | None:
    with node.db.read() as session:
        row = repos.get_signal(session, uid, origin)
        return row.retraction if row is not None else None


def verify_signal_record(node: Node, record: dict[str, Any]) -> tuple[bool, str | None]:
    """Check a stored record's signature here, against our key or the peer's pinned key."""
    keys: dict[str, VerifierKey] = peers.pinned(node)
    keys[node.origin] = VerifierKey.parse(node.verifier_key)
    try:
        verify_record(record, keys.get)
    except SignetError as exc:
        return False, str(exc)
    return True, None


@dataclass
class EntryView:
    index: int
    kind: str
    time: str
    summary: str
    commitment: str | None
    leaf_hash: str


def describe_entry(e: LogEntry) -> EntryView:
    from app.crypto._encoding import b64encode

    entry = e.entry
    record = entry.get("record")
    summary = ""
    if isinstance(record, dict):
        kind = record.get("kind")
        if kind == "signal":
            cats = ", ".join(record.get("categories") or [])
            summary = f"{record.get('type')} {record.get('id')} ({cats})"
        elif kind == "retraction":
            target = record.get("signal") or {}
            summary = f"retracts {target.get('id')}"
        elif kind == "feedback":
            summary = f"{record.get('verdict')} on {(record.get('signal') or {}).get('id')}"
        else:
            summary = str(kind)
        summary = f"{record.get('origin')}: {summary}"
    for key in ("from", "to", "peer", "count", "tlp"):
        if key in entry and not isinstance(entry[key], (dict, list)):
            summary += f" {key}={entry[key]}"
    commitment = entry.get("commitment") if isinstance(entry.get("commitment"), str) else None
    return EntryView(
        e.index,
        str(entry.get("kind", "")),
        str(entry.get("time", "")),
        summary.strip(),
        commitment,
        b64encode(e.leaf_hash),
    )


@dataclass
class SignatureView:
    name: str
    key_hash: str
    kind: str  # "log signature" or "cosignature"
    timestamp: int | None


def describe_checkpoint(note: str) -> dict[str, Any]:
    """The checkpoint's lines and signature lines, parsed but NOT verified (the page's own
    script verifies; this is only what to show)."""
    parsed = parse_note(note)
    lines = parsed.text.rstrip("\n").split("\n")
    sigs = []
    for s in parsed.signatures:
        if len(s.signature) == 72:  # tlog-cosignature/v1: 8-byte timestamp || signature
            (ts,) = struct.unpack(">Q", s.signature[:8])
            sigs.append(SignatureView(s.name, s.key_hash.hex(), "cosignature", ts))
        else:
            sigs.append(SignatureView(s.name, s.key_hash.hex(), "log signature", None))
    return {
        "origin": lines[0],
        "size": int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0,
        "root": lines[2] if len(lines) > 2 else "",
        "signatures": sigs,
    }
