"""Provable withdrawal: for every retraction (and expiry) an origin issued, who applied it.

Input is the verified logs of several nodes (each audited against its pinned key first, see
`signet audit reconcile`). From them:

- the *withdrawals*: each origin's own `retraction` entries, and its own signals whose latest
  version's `valid_until` has passed (and that it did not retract);
- the *holders* of each withdrawn signal: every audited node whose log has a `received` entry
  for any version of it, and every node (audited or not) an audited log says it `delivered`
  a version of it to;
- each holder's *receipt*: an `applied` entry in its own log (app/services/receipts.py) naming
  the retraction's digest, or, for an expiry, the signal.

A holder is `applied` (with the receipt's index and time, its leaf hash and an inclusion proof
in the holder's audited tree), `missing` (audited, held it, no receipt), `pending` (no receipt
yet, but the withdrawal is younger than the grace period: pulls and expiry rounds run on a
timer), or `not audited` (another log says it holds the signal; its log was not given).

Restricted (amber/red) signals appear in logs only as salted commitments: they are counted,
never matched, as in the pairwise reconciliation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.crypto import merkle
from app.crypto._encoding import b64encode
from app.crypto.canonical import canonical_json
from app.crypto.records import record_digest
from app.errors import SignetError

Key = tuple[str, str]  # (origin, signal id)

APPLIED = "applied"
MISSING = "missing"
PENDING = "pending"
NOT_AUDITED = "not audited"


def _digest(record: dict[str, Any]) -> str:
    return record_digest(record).hex()


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


@dataclass
class _Own:
    """What one log says about the withdrawal of signals (filled entry by entry)."""

    origin: str
    # Our own signals: id -> (version, valid_until, set of digests of every version)
    signals: dict[str, tuple[int, datetime | None, set[str]]] = field(default_factory=dict)
    retractions: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    retracted: set[str] = field(default_factory=set)
    held: dict[Key, set[str]] = field(default_factory=dict)  # received signals: digests
    delivered: dict[str, set[str]] = field(default_factory=dict)  # to -> digests
    receipts: dict[str, tuple[int, str, dict[str, Any]]] = field(default_factory=dict)
    expiries: dict[Key, tuple[int, str, dict[str, Any]]] = field(default_factory=dict)
    restricted_receipts: int = 0
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)  # the ones we cite

    def add(self, index: int, entry: Any) -> None:
        if not isinstance(entry, dict):
            return
        kind = entry.get("kind")
        record = entry.get("record")
        if kind == "signal" and isinstance(record, dict) and record.get("origin") == self.origin:
            uid = str(record.get("id"))
            raw = record.get("version")
            version = raw if isinstance(raw, int) else 1
            old = self.signals.get(uid)
            digests = (old[2] if old else set()) | {_digest(record)}
            if old is None or version >= old[0]:
                self.signals[uid] = (version, _time(record.get("valid_until")), digests)
            else:
                self.signals[uid] = (old[0], old[1], digests)
        elif kind == "retraction" and isinstance(record, dict):
            ref = record.get("signal")
            if isinstance(ref, dict) and record.get("origin") == self.origin:
                uid = str(ref.get("id"))
                self.retractions.append((index, str(entry.get("time")), uid, record))
                self.retracted.add(uid)
                self.entries[index] = entry
        elif kind == "received" and isinstance(record, dict) and record.get("kind") == "signal":
            key = (str(record.get("origin")), str(record.get("id")))
            self.held.setdefault(key, set()).add(_digest(record))
        elif kind == "delivered" and isinstance(entry.get("digests"), list):
            self.delivered.setdefault(str(entry.get("to")), set()).update(
                str(d) for d in entry["digests"]
            )
        elif kind == APPLIED:
            if "commitment" in entry:
                self.restricted_receipts += 1
                return
            action, digest, ref = entry.get("action"), entry.get("digest"), entry.get("signal")
            time = str(entry.get("time"))
            if action == "retraction" and isinstance(digest, str):
                self.receipts.setdefault(digest, (index, time, entry))
            elif action == "expiry" and isinstance(ref, dict):
                key = (str(ref.get("origin")), str(ref.get("id")))
                self.expiries.setdefault(key, (index, time, entry))


@dataclass
class Evidence:
    """An entry of one log, with its leaf hash and an inclusion proof in the audited tree."""

    log: str
    index: int
    entry: dict[str, Any]
    leaf_hash: str
    size: int
    proof: list[str]

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Holder:
    node: str
    status: str  # applied | missing | pending | not audited
    time: str | None = None
    evidence: Evidence | None = None


@dataclass
class Withdrawal:
    origin: str
    signal_id: str
    action: str  # retraction | expiry
    time: str  # when the origin logged the retraction, or the signal's valid_until
    digest: str | None  # the retraction record's (None for an expiry)
    issued: Evidence | None
    holders: list[Holder] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(h.status != MISSING for h in self.holders)

    def as_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "signal": self.signal_id,
            "action": self.action,
            "time": self.time,
            "digest": self.digest,
            "issued": self.issued.as_json() if self.issued else None,
            "holders": [
                {
                    "node": h.node,
                    "status": h.status,
                    "time": h.time,
                    "evidence": h.evidence.as_json() if h.evidence else None,
                }
                for h in self.holders
            ],
        }


@dataclass
class AuditedLog:
    """One node's verified log, as `withdrawals` needs it."""

    origin: str
    size: int
    root: bytes
    view: _Own
    # (index, size) -> inclusion proof, from the node's auditor API
    inclusion: Callable[[int, int], list[bytes]]


def collector(origin: str) -> _Own:
    """A sink for `audit_node(..., sink=...)` that keeps what `withdrawals` needs."""
    return _Own(origin)


def _evidence(log: AuditedLog, index: int, entry: dict[str, Any]) -> Evidence:
    """The entry's leaf hash and an inclusion proof, checked against the audited root."""
    leaf = merkle.leaf_hash(canonical_json(entry))
    proof = log.inclusion(index, log.size)
    try:
        merkle.verify_inclusion(leaf, index, log.size, proof, log.root)
    except SignetError as exc:
        from app.audit.errors import AuditFailed

        raise AuditFailed(f"{log.origin}: inclusion proof of entry {index}: {exc}") from exc
    return Evidence(
        log.origin, index, entry, b64encode(leaf), log.size, [b64encode(h) for h in proof]
    )


def withdrawals(
    logs: Iterable[AuditedLog],
    *,
    now: datetime | None = None,
    grace: timedelta = timedelta(minutes=2),
    evidence: bool = True,
) -> list[Withdrawal]:
    """Every withdrawal issued by an audited origin, with each holder's status."""
    logs = list(logs)
    by_origin = {log.origin: log for log in logs}
    now = now or datetime.now(UTC)
    out: list[Withdrawal] = []

    def holders_of(origin: str, uid: str, digests: set[str]) -> list[str]:
        found: set[str] = set()
        for log in logs:
            if log.origin != origin and log.view.held.get((origin, uid)):
                found.add(log.origin)
            for to, sent in log.view.delivered.items():
                if to != origin and sent & digests:
                    found.add(to)
        return sorted(found)

    for log in logs:
        own = log.view
        for index, issued_at, uid, record in own.retractions:
            digest = _digest(record)
            digests = own.signals.get(uid, (0, None, set()))[2]
            # Receivers may hold versions the origin's log shows only as commitments; the
            # receipts themselves then still name the holder.
            names = set(holders_of(log.origin, uid, digests))
            names |= {
                o.origin for o in logs if o.origin != log.origin and digest in o.view.receipts
            }
            w = Withdrawal(
                log.origin,
                uid,
                "retraction",
                issued_at,
                digest,
                _evidence(log, index, own.entries[index]) if evidence else None,
            )
            young = (_time(issued_at) or now) > now - grace
            for name in sorted(names):
                holder = by_origin.get(name)
                if holder is None:
                    w.holders.append(Holder(name, NOT_AUDITED))
                elif digest in holder.view.receipts:
                    r_index, r_time, r_entry = holder.view.receipts[digest]
                    ev = _evidence(holder, r_index, r_entry) if evidence else None
                    w.holders.append(Holder(name, APPLIED, r_time, ev))
                else:
                    w.holders.append(Holder(name, PENDING if young else MISSING))
            out.append(w)
        for uid, (_, until, digests) in sorted(own.signals.items()):
            if until is None or until > now or uid in own.retracted:
                continue
            names = set(holders_of(log.origin, uid, digests))
            names |= {o.origin for o in logs if (log.origin, uid) in o.view.expiries}
            if not names:
                continue
            w = Withdrawal(log.origin, uid, "expiry", until.isoformat(), None, None)
            young = until > now - grace
            for name in sorted(names):
                holder = by_origin.get(name)
                if holder is None:
                    w.holders.append(Holder(name, NOT_AUDITED))
                elif (log.origin, uid) in holder.view.expiries:
                    r_index, r_time, r_entry = holder.view.expiries[(log.origin, uid)]
                    ev = _evidence(holder, r_index, r_entry) if evidence else None
                    w.holders.append(Holder(name, APPLIED, r_time, ev))
                else:
                    w.holders.append(Holder(name, PENDING if young else MISSING))
            out.append(w)
    return out
