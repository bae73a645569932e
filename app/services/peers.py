"""Peers: adding (after checking the descriptor against the pinned key), changing, removing.

Nothing is trusted on first use: the operator pins a verifier key obtained out of band, and a
peer is refused unless the descriptor served at its URL is signed by that key and names the
same origin and key. Adding, changing and removing a peer are exchange-log entries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.crypto.keys import VerifierKey
from app.crypto.records import verify_record
from app.errors import Conflict, CryptoError, InvalidInput, NotFound, VerificationError
from app.federation.audience import SharingPolicy
from app.services.node import Node
from app.services.tx import transaction
from app.signals.vocab import Category, SignalType
from app.storage import log as log_store
from app.storage import peers as store
from app.storage.models import PeerRow
from app.storage.types import utcnow

log = logging.getLogger("signet.peers")

FetchDescriptor = Callable[[str], dict[str, Any]]


class PeerIn(BaseModel):
    url: str = Field(max_length=2048, description="Base URL of the peer node.")
    verifier_key: str = Field(max_length=512, description="The peer's pinned verifier key.")
    policy: str = Field(
        "",
        max_length=2048,
        description="What we share with it: `categories=a,b;types=pdq,md5;tlp=green,amber`.",
    )


class PeerPolicyIn(BaseModel):
    policy: str = Field(max_length=2048)


class PeerOut(BaseModel):
    origin: str
    url: str
    verifier_key: str
    policy: dict[str, Any]
    added_at: datetime
    updated_at: datetime
    removed_at: datetime | None
    cursor: int = Field(description="Position in the peer's log we have pulled up to.")
    remote_size: int = Field(description="The peer's log size at our last pull.")
    lag: int = Field(description="Log entries of the peer not yet looked at.")
    last_attempt: datetime | None
    last_success: datetime | None
    last_error: str | None
    records_received: int
    records_refused: int
    records_delivered: int
    witness_size: int = Field(description="Size of our log this peer last cosigned.")
    witness_error: str | None
    roster_status: str | None = Field(
        None, description="active, suspended or removed in the federation roster; null: not in it"
    )


def to_out(row: PeerRow) -> PeerOut:
    return PeerOut(
        origin=row.origin,
        url=row.url,
        verifier_key=row.verifier_key,
        policy=row.policy,
        added_at=row.added_at,
        updated_at=row.updated_at,
        removed_at=row.removed_at,
        cursor=row.cursor,
        remote_size=row.remote_size,
        lag=max(0, row.remote_size - row.cursor),
        last_attempt=row.last_attempt,
        last_success=row.last_success,
        last_error=row.last_error,
        records_received=row.records_received,
        records_refused=row.records_refused,
        records_delivered=row.records_delivered,
        witness_size=row.witness_size,
        witness_error=row.witness_error,
    )


def known_categories(node: Node) -> frozenset[str]:
    return frozenset(c.value for c in Category) | node.settings.extra_categories


def parse_policy(node: Node, text: str) -> SharingPolicy:
    """Raise InvalidPolicy (an InvalidInput) naming the bad part."""
    return SharingPolicy.parse(
        text,
        known_categories=known_categories(node),
        known_types=frozenset(t.value for t in SignalType),
    )


def policy_of(row: PeerRow) -> SharingPolicy:
    return SharingPolicy.from_dict(row.policy)


def parse_key(text: str) -> VerifierKey:
    try:
        return VerifierKey.parse(text.strip())
    except (CryptoError, ValueError) as exc:
        raise InvalidInput("verifier_key", f"not a verifier key: {exc}") from None


def check_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) < 10:
        raise InvalidInput("url", "must be an http:// or https:// base URL")
    return url


def check_descriptor(descriptor: dict[str, Any], key: VerifierKey) -> None:
    """Raise VerificationError unless the descriptor is signed by `key` and names it."""
    if descriptor.get("kind") != "node":
        raise VerificationError("the URL does not serve a Signet node descriptor")
    if descriptor.get("origin") != key.origin:
        raise VerificationError(
            f"the node at this URL is {descriptor.get('origin')!r}, the pinned key is for "
            f"{key.origin!r}"
        )
    if descriptor.get("verifier_key") != str(key):
        raise VerificationError("the node at this URL publishes another verifier key")
    verify_record(descriptor, lambda origin: key if origin == key.origin else None)


def add(node: Node, spec: PeerIn, fetch: FetchDescriptor, *, replace: bool = False) -> PeerOut:
    """Pin a peer after checking its descriptor. Re-adding a removed peer restores it."""
    url = check_url(spec.url)
    key = parse_key(spec.verifier_key)
    if key.origin == node.origin:
        raise InvalidInput("verifier_key", "this is our own key")
    policy = parse_policy(node, spec.policy)
    # What the URL served, and what went wrong fetching it, stays in our log: echoing it would
    # make this endpoint a tool to read internal pages through the node (SSRF). The admin gets
    # the step that failed; the fetch itself is bounded (no redirects, a size cap, a deadline:
    # app/federation/client.py).
    try:
        descriptor = fetch(url)
    except Exception as exc:
        log.warning("add peer %s: fetching %s/.well-known/signet failed: %s", key.origin, url, exc)
        raise InvalidInput(
            "url",
            "step 'fetch descriptor' failed: no Signet descriptor could be read from this URL "
            "(the node's log says why)",
        ) from None
    try:
        check_descriptor(descriptor, key)
    except Exception as exc:  # whatever the served JSON made the check trip over
        log.warning("add peer %s: the descriptor at %s does not verify: %s", key.origin, url, exc)
        raise InvalidInput(
            "verifier_key",
            "step 'verify descriptor' failed: the URL does not serve a descriptor of this origin "
            "signed by this verifier key (the node's log says why)",
        ) from None
    now = utcnow()
    with transaction(node) as tx:
        row = store.get_peer(tx.session, key.origin, removed=True)
        if row is not None and row.removed_at is None and not replace:
            if row.verifier_key == str(key) and row.url == url and row.policy == policy.to_dict():
                return to_out(row)
            raise Conflict(
                f"peer {key.origin} is already pinned; change it with `peers set-policy` or "
                "remove it first"
            )
        kind = "peer.added" if row is None or row.removed_at is not None else "peer.changed"
        if row is None:
            row = PeerRow(origin=key.origin, url=url, verifier_key=str(key), added_at=now)
        elif row.verifier_key != str(key):
            # A new key for a known origin: start over, nothing pulled under the old key counts.
            row.cursor = 0
            row.witness_size = 0
        row.url = url
        row.verifier_key = str(key)
        row.policy = policy.to_dict()
        row.removed_at = None
        row.updated_at = now
        row.last_error = None
        tx.session.add(row)
        tx.append(
            kind,
            {"peer": key.origin, "url": url, "verifier_key": str(key), "policy": policy.to_dict()},
        )
    log.info("%s %s at %s", kind, key.origin, url)
    return to_out(row)


def set_policy(node: Node, origin: str, text: str) -> PeerOut:
    policy = parse_policy(node, text)
    with transaction(node) as tx:
        row = store.get_peer(tx.session, origin)
        if row is None:
            raise NotFound(f"no peer {origin!r}")
        row.policy = policy.to_dict()
        row.updated_at = utcnow()
        tx.session.add(row)
        tx.append("peer.changed", {"peer": origin, "policy": policy.to_dict()})
    return to_out(row)


def remove(node: Node, origin: str) -> PeerOut:
    with transaction(node) as tx:
        row = store.get_peer(tx.session, origin)
        if row is None:
            raise NotFound(f"no peer {origin!r}")
        row.removed_at = row.updated_at = utcnow()
        tx.session.add(row)
        tx.append("peer.removed", {"peer": origin})
    log.info("peer.removed %s", origin)
    return to_out(row)


def list_all(node: Node, *, removed: bool = False) -> list[PeerOut]:
    with node.db.read() as session:
        return [to_out(r) for r in store.list_peers(session, removed=removed)]


def get(node: Node, origin: str) -> PeerOut:
    with node.db.read() as session:
        row = store.get_peer(session, origin)
        if row is None:
            raise NotFound(f"no peer {origin!r}")
        return to_out(row)


def pinned(node: Node) -> dict[str, VerifierKey]:
    """origin -> pinned key of every current peer."""
    with node.db.read() as session:
        keys = store.pinned_keys(session)
    return {o: VerifierKey.parse(k) for o, k in keys.items()}


def log_size(node: Node) -> int:
    with node.db.read() as session:
        return log_store.log_size(session)
