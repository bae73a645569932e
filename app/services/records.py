"""The signed records this node publishes: signals, retractions and feedback.

A record is the JSON a peer or auditor can verify on its own: every field that matters, then
`origin`, `key_id` and `signature` (Ed25519 over the RFC 8785 bytes of the rest).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.crypto.records import sign_record, sign_record_canonical
from app.federation import validate
from app.services.node import Node
from app.services.timefmt import parse_rfc3339, rfc3339

RECORD_VERSION = 1


def signal_body(
    *,
    uid: str,
    version: int,
    type_: str,
    value: str,
    attrs: dict[str, Any],
    categories: list[str],
    indicators: list[str],
    opinion: str,
    confidence: int,
    reviewed: bool,
    valid_from: datetime,
    valid_until: datetime,
    tlp: str,
    peers: list[str],
    hops: int,
) -> dict[str, Any]:
    return {
        "kind": "signal",
        "v": RECORD_VERSION,
        "id": uid,
        "version": version,
        "type": type_,
        "value": value,
        "attrs": attrs,
        "categories": categories,
        "indicators": indicators,
        "opinion": opinion,
        "confidence": confidence,
        "reviewed": reviewed,
        "valid_from": rfc3339(valid_from),
        "valid_until": rfc3339(valid_until),
        "audience": {"tlp": tlp, "peers": peers, "hops": hops},
    }


def signal_columns(body: dict[str, Any]) -> dict[str, Any]:
    """The signal table's columns that restate a signal record's fields, read from the record so
    the row says exactly what was signed (timestamps included, at the record's precision)."""
    audience = body["audience"]
    return {
        "uid": body["id"],
        "version": body["version"],
        "type": body["type"],
        "value": body["value"],
        "attrs": body["attrs"],
        "categories": body["categories"],
        "indicators": body["indicators"],
        "opinion": body["opinion"],
        "confidence": body["confidence"],
        "reviewed": body["reviewed"],
        "tlp": audience["tlp"],
        "audience_peers": audience["peers"],
        "audience_hops": audience["hops"],
        "valid_from": parse_rfc3339(body["valid_from"]),
        "valid_until": parse_rfc3339(body["valid_until"]),
    }


def retraction_body(
    *, signal_origin: str, signal_uid: str, version: int, reason: str, at: datetime
) -> dict[str, Any]:
    return {
        "kind": "retraction",
        "v": RECORD_VERSION,
        "signal": {"origin": signal_origin, "id": signal_uid, "version": version},
        "reason": reason,
        "time": rfc3339(at),
    }


def feedback_body(
    *,
    uid: str,
    signal_origin: str,
    signal_uid: str,
    verdict: str,
    reason: str | None,
    at: datetime,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "feedback",
        "v": RECORD_VERSION,
        "id": uid,
        "signal": {"origin": signal_origin, "id": signal_uid},
        "verdict": verdict,
        "time": rfc3339(at),
    }
    if reason:
        body["reason"] = reason
    return body


def sign(node: Node, body: dict[str, Any], *, owned: bool = False) -> dict[str, Any]:
    """Sign a record body, after the same checks a peer's copy of it will face
    (`app/federation/validate`): what we publish, every peer accepts. `owned`: see
    `sign_record` (the caller made `body` for this record alone). Bulk publishing of
    already-checked signals: `sign_prepared_signal`."""
    check(node, body)
    return sign_record(body, node.key, node.origin, owned=owned)


def sign_prepared_signal(
    node: Node, body: dict[str, Any], *, owned: bool = False
) -> tuple[dict[str, Any], bytes]:
    """Sign a signal body built by `signal_body` from an item that `signals.prepare` already
    put through the checks the peer-side check repeats (canonical value and attrs from the same
    `canonicalize`, vocabulary from the same validators, times and audience); returns the
    signed record and its canonical bytes (for its log entry).

    Only the record size, which nothing before signing bounds, is checked again, on the signed
    record as a peer measures it; re-running the whole check was a sixth of a bulk submit's
    time. That the two paths agree is tested (tests/api/test_published_records.py: every
    published record passes the full check)."""
    record, canonical = sign_record_canonical(body, node.key, node.origin, owned=owned)
    validate.check_canonical_size(record, canonical, node.settings.max_record_bytes)
    return record, canonical


def check(node: Node, record: dict[str, Any]) -> None:
    """Raise `validate.RecordInvalid` unless `record` is a well-formed v1 record of its kind.
    The one validation path for records, ours and received ones (services/sync.py)."""
    settings = node.settings
    kind = record.get("kind")
    if kind == "signal":
        validate.check_signal(
            record,
            extra_categories=settings.extra_categories,
            max_bytes=settings.max_record_bytes,
        )
    elif kind == "retraction":
        validate.check_retraction(record, max_bytes=settings.max_record_bytes)
    elif kind == "feedback":
        validate.check_feedback(record, max_bytes=settings.max_record_bytes)
