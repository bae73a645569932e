"""Auditing across nodes: witness quorums on a checkpoint, and reconciling two nodes' logs.

`check_quorum` counts the cosignatures on a checkpoint note made by pinned witness keys (a
peer's node key `origin+hash+base64(0x01||key)` or its cosignature key with type 0x04; both
name the same Ed25519 key) and fails below the quorum.

`reconcile` compares what node A's log says it delivered to B (`delivered` entries: the
digests of the records in each page) with what B's log says it received from A (`received`
entries carry each record's digest), and the reverse. A record A delivered that B already held
from another peer, or refused (B's `refused` entries name the digest), is accounted for; one
that appears nowhere in B's log is a failure, as is anything B says A sent that A never
logged as delivered.

Refusals are reported with their reasons (issue 9). A refusal is "accounted for" only when it
says the record was bad; one whose reason is an audience violation (a red record, an amber one
relayed, a record outside its named or excluded audience, past its hop limit, or sent back to
its origin) is a failure of the sender, whether or not the digest matches a delivery. A
refusal naming a digest the sender never logged delivering is a failure too: either the
receiver invents refusals or the sender hides deliveries. Entries about restricted (amber)
records carry only salted commitments and cannot be reconciled without the salts; they are
counted, not matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.audit.client import PAGE, AuditClient
from app.audit.errors import AuditFailed
from app.crypto.checkpoint import (
    Cosignature,
    cosignature_verifier_key,
    open_cosigned_checkpoint,
)
from app.crypto.keys import ALG_COSIGNATURE_V1, VerifierKey
from app.errors import CryptoError

__all__ = ["Reconciliation", "check_quorum", "log_view", "reconcile", "scan", "witness_key"]


def witness_key(text: str) -> VerifierKey:
    """A witness's cosignature key from its node verifier key or its 0x04 key."""
    try:
        return VerifierKey.parse(text.strip(), alg=ALG_COSIGNATURE_V1, any_name=True)
    except CryptoError:
        pass
    try:
        node_key = VerifierKey.parse(text.strip())
    except CryptoError as exc:
        raise AuditFailed(f"--witness: not a verifier key: {exc}") from exc
    return VerifierKey.parse(
        cosignature_verifier_key(node_key.origin, node_key.public_key),
        alg=ALG_COSIGNATURE_V1,
        any_name=True,
    )


def check_quorum(
    note: str, log_key: VerifierKey, witnesses: Iterable[VerifierKey], quorum: int
) -> list[Cosignature]:
    """The valid cosignatures of pinned witnesses; AuditFailed if fewer than `quorum`."""
    try:
        cp, valid = open_cosigned_checkpoint(note, log_key, witnesses)
    except CryptoError as exc:
        raise AuditFailed(f"checkpoint cosignatures: {exc}") from exc
    if len(valid) < quorum:
        names = ", ".join(c.name for c in valid) or "none"
        raise AuditFailed(
            f"checkpoint {cp.origin} size {cp.size} has {len(valid)} valid witness "
            f"cosignature(s) ({names}), quorum is {quorum}"
        )
    return valid


# Refusal reasons (the refusing node writes `<digest16> <ExceptionName>: <text>`) that say
# the SENDER broke the audience rules, not merely that the record was unusable.
AUDIENCE_VIOLATIONS = (
    "RedRecordReceived",
    "AmberRelayed",
    "NotInAudience",
    "HopLimitExceeded",
    "OwnRecordReturned",
    "BadHopCount",
)
RESTRICTED = "restricted"  # the digest slot of a refusal about a red/amber record


def is_violation(reason: str) -> bool:
    return reason.startswith(AUDIENCE_VIOLATIONS)


@dataclass
class Direction:
    """What `sender` says it delivered to `receiver`, against what `receiver` logged."""

    sender: str
    receiver: str
    delivered: int = 0
    received: int = 0
    held_from_elsewhere: int = 0
    refused: int = 0
    missing: list[str] = field(default_factory=list)  # delivered, nowhere in receiver's log
    unexplained: list[str] = field(default_factory=list)  # received, never delivered
    # (digest prefix, reason) of every refusal the receiver logged for the sender's records
    refusals: list[tuple[str, str]] = field(default_factory=list)
    violations: list[tuple[str, str]] = field(default_factory=list)  # audience violations
    refused_undelivered: list[tuple[str, str]] = field(default_factory=list)
    restricted_delivered: int = 0  # commitment-only entries: counted, not matched
    restricted_received: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexplained or self.violations or self.refused_undelivered)


@dataclass
class Reconciliation:
    a: str
    b: str
    directions: list[Direction]

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.directions)


@dataclass
class _LogView:
    origin: str
    delivered: dict[str, set[str]] = field(default_factory=dict)  # to -> digests
    received: dict[str, set[str]] = field(default_factory=dict)  # from -> digests
    refused: dict[str, list[tuple[str, str]]] = field(
        default_factory=dict
    )  # from -> (digest16, reason)
    restricted_delivered: int = 0
    restricted_received: int = 0

    def all_received(self) -> set[str]:
        return set().union(*self.received.values()) if self.received else set()

    def add(self, entry: Any) -> None:
        """Take in one (verified) entry of this node's log."""
        if not isinstance(entry, dict):
            return
        kind = entry.get("kind")
        if kind == "delivered" and isinstance(entry.get("digests"), list):
            self.delivered.setdefault(str(entry.get("to")), set()).update(
                str(d) for d in entry["digests"]
            )
        elif kind == "received" and isinstance(entry.get("digest"), str):
            self.received.setdefault(str(entry.get("from")), set()).add(entry["digest"])
        elif kind == "refused" and isinstance(entry.get("reasons"), list):
            out = self.refused.setdefault(str(entry.get("from")), [])
            for r in entry["reasons"]:
                digest, _, reason = str(r).partition(" ")
                out.append((digest, reason))
        elif kind == "delivered" and "commitment" in entry:
            self.restricted_delivered += 1
        elif kind == "received" and "commitment" in entry:
            self.restricted_received += 1


def _entries(client: AuditClient, size: int) -> Iterator[Any]:
    start = 0
    while start < size:
        page = client.entries(start, min(size, start + PAGE))
        for index, entry, _ in page:
            if index >= size:
                return
            yield entry
        start = page[-1][0] + 1


def scan(client: AuditClient, origin: str, size: int) -> _LogView:
    view = _LogView(origin)
    for entry in _entries(client, size):
        view.add(entry)
    return view


def log_view(origin: str) -> _LogView:
    """An empty view, to fill with `add` (e.g. as `audit_node`'s sink)."""
    return _LogView(origin)


def _direction(sender: _LogView, receiver: _LogView) -> Direction:
    d = Direction(sender.origin, receiver.origin)
    sent = sender.delivered.get(receiver.origin, set())
    got = receiver.received.get(sender.origin, set())
    anywhere = receiver.all_received()
    refusals = receiver.refused.get(sender.origin, [])
    refused = {digest for digest, _ in refusals}
    sent_prefixes = {digest[:16] for digest in sent}
    d.delivered, d.received = len(sent), len(got)
    for digest in sorted(sent - got):
        if digest in anywhere:
            d.held_from_elsewhere += 1
        elif digest[:16] in refused:
            d.refused += 1
        else:
            d.missing.append(digest)
    d.unexplained = sorted(got - sent)
    d.refusals = list(refusals)
    for digest, reason in refusals:
        if is_violation(reason):
            d.violations.append((digest, reason))
        elif digest != RESTRICTED and digest not in sent_prefixes:
            d.refused_undelivered.append((digest, reason))
    # Only the totals of restricted entries are visible: neither side names the other in them.
    d.restricted_delivered = sender.restricted_delivered
    d.restricted_received = receiver.restricted_received
    return d


def reconcile(a: _LogView, b: _LogView) -> Reconciliation:
    return Reconciliation(a.origin, b.origin, [_direction(a, b), _direction(b, a)])
