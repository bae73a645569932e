"""`applied` receipts: a receiver's own signed log says when it withdrew another node's signal.

A retraction or an expiry only protects anyone if every node that held the signal stops
matching it. The origin's log proves it issued the retraction and (in `delivered` entries) to
whom it handed it; these receipts are the other half: a receiver appends one, in the same
transaction as the change, whenever it

- applies a retraction of a signal from another origin (`action: "retraction"`), or
- marks a received signal expired because its `valid_until` passed (`action: "expiry"`).

An auditor holding both logs (`signet audit reconcile`) can then list, per retraction, which
receivers applied it and when, with the entries and inclusion proofs as evidence, and which
receivers held the signal but never logged applying its withdrawal (spec §6, LOG-6).

Entry bodies (restricted signals get only a salted commitment of the same body, LOG-3):

    {"kind": "applied", "time", "action": "retraction",
     "signal": {"origin", "id"}, "digest": <sha256 hex of the retraction record>,
     "received": <index of our `received` entry of that retraction>}
    {"kind": "applied", "time", "action": "expiry",
     "signal": {"origin", "id", "version"}, "digest": <sha256 hex of the signal record>,
     "valid_until": <the record's valid_until>}
"""

from __future__ import annotations

from typing import Any

from app.crypto import records as crypto_records
from app.services.timefmt import rfc3339
from app.services.tx import COMMITTED_TLP, Tx
from app.storage.models import SignalRow

KIND = "applied"


def record_digest(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical bytes, signature included: how log entries name
    a record (the auditor's side computes it with the same `app.crypto.records` function)."""
    return crypto_records.record_digest(record).hex()


def _append(tx: Tx, body: dict[str, Any], tlp: str) -> int:
    if tlp in COMMITTED_TLP:
        return tx.append_committed(KIND, body, tlp)
    return tx.append(KIND, body)


def retraction_applied(tx: Tx, retraction: dict[str, Any], tlp: str, received_index: int) -> int:
    """Log that we applied `retraction` (already logged as `received` at `received_index`).

    `tlp` is the retracted signal's, or "amber" when we never held the signal (its audience
    is then unknown, so the receipt stays a commitment like the retraction's own entry)."""
    ref = retraction["signal"]
    body = {
        "action": "retraction",
        "signal": {"origin": ref["origin"], "id": ref["id"]},
        "digest": record_digest(retraction),
        "received": received_index,
    }
    return _append(tx, body, tlp)


def expiry_applied(tx: Tx, row: SignalRow) -> int:
    """Log that a signal we received from a peer expired here (its `valid_until` passed)."""
    body = {
        "action": "expiry",
        "signal": {"origin": row.origin, "id": row.uid, "version": row.version},
        "digest": record_digest(row.record),
        "valid_until": row.record.get("valid_until") or rfc3339(row.valid_until),
    }
    return _append(tx, body, row.tlp)
