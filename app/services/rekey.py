"""Following a peer's key rotation, and re-pinning a peer's key by hand.

A node that rotates its key (`signet key rotate`, app/services/keys.py) logs a rotation record
signed by the old key and by the new one, and publishes every such record, oldest first, in
its descriptor (`rotations`). A peer that meets the new key (records with an unknown `key_id`
in a pull, or requests that stop verifying) fetches the descriptor, walks the chain from the
key it pinned to the key the descriptor is signed with, checking both signatures of every
link, and re-pins the new key. Nothing else about the peer changes: its policy, cursor and
counters stay as they were. The re-pin is an exchange-log entry (`peer.key_rotated`) holding
the records that justified it, and a log line.

With no valid chain (the peer lost its key and made a new one, say), nothing is re-pinned: the
peer's `last_error` says so and the operator checks the new key out of band and runs
`signet peers set-key` (a `peer.key_set` entry).

Keys a peer rotated away from are kept (`peer_key`): records it signed before the rotation,
pulled after it, still verify. Rotation is not revocation, here as in our own log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import Counter
from sqlmodel import Session, col, select

from app.audit.rotation import verify_rotation
from app.crypto.keys import VerifierKey
from app.errors import InvalidInput, NotFound, SignetError, VerificationError
from app.services.node import Node
from app.services.tx import transaction
from app.storage import logscan
from app.storage import peers as store
from app.storage.models import PeerKeyRow, PeerRow
from app.storage.types import utcnow

log = logging.getLogger("signet.rekey")

FetchDescriptor = Callable[[str], dict[str, Any]]

REPINS = Counter("signet_peer_key_repins_total", "Peer keys re-pinned, by how.", ["peer", "how"])
VERIFY_FAILURES = Counter(
    "signet_peer_verification_failures_total",
    "Requests or records of a current peer that did not verify under its pinned key.",
    ["peer", "what"],
)


# --- our side: the chain we publish ---------------------------------------------------------


def rotation_records(node: Node) -> list[dict[str, Any]]:
    """Our rotation records, oldest first (from `key.rotated` log entries)."""
    import json

    with node.db.read() as session:
        rows = logscan.entries_of_kind(session, "key.rotated")
    return [json.loads(r.data)["record"] for r in rows]


# --- the peer's side: following -------------------------------------------------------------


def walk_chain(pinned: VerifierKey, target: str, records: Iterable[Any]) -> list[dict[str, Any]]:
    """The rotation records leading from `pinned` to the key `target`, each verified (signed
    by both its keys); VerificationError if there is no such chain."""
    by_old: dict[str, dict[str, Any]] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        try:
            old, _new = verify_rotation(record)
        except VerificationError as exc:
            log.warning("ignoring a rotation record of %s: %s", pinned.origin, exc)
            continue
        if old.origin == pinned.origin:
            by_old.setdefault(str(old), dict(record))
    chain: list[dict[str, Any]] = []
    current = str(pinned)
    while current != target:
        link = by_old.pop(current, None)  # pop: a cycle cannot loop forever
        if link is None:
            raise VerificationError(
                f"no rotation record chain from the pinned key {pinned.key_id} to {target}"
            )
        chain.append(link)
        current = str(link["new_key"])
    return chain


def key_for(session: Session, keys: Mapping[str, VerifierKey], origin: str, key_id: Any) -> Any:
    """The key a record of `origin` with `key_id` verifies under: the trusted one, or a key the
    peer rotated away from (records signed before the rotation)."""
    key = keys.get(origin)
    if key is None or key.key_id == key_id or not isinstance(key_id, str):
        return key
    old = session.execute(
        select(PeerKeyRow.verifier_key).where(
            col(PeerKeyRow.origin) == origin, col(PeerKeyRow.key_id) == key_id
        )
    ).first()
    return VerifierKey.parse(old[0]) if old else key


def key_ids_of(peer: str, records: Iterable[Mapping[str, Any]]) -> set[str]:
    """The key_ids that `peer`'s own records among `records` name."""
    return {
        r["key_id"]
        for r in records
        if isinstance(r, Mapping) and r.get("origin") == peer and isinstance(r.get("key_id"), str)
    }


def known_key_ids(session: Session, peer: str) -> set[str]:
    """`peer`'s pinned key's id and the ids of the keys it retired (empty if no such peer)."""
    row = store.get_peer(session, peer)
    if row is None:
        return set()
    known: set[str] = {str(VerifierKey.parse(row.verifier_key).key_id)}
    known |= {
        str(k)
        for k in session.execute(
            select(PeerKeyRow.key_id).where(col(PeerKeyRow.origin) == peer)
        ).scalars()
    }
    return known


def follow(node: Node, peer: str, fetch: FetchDescriptor) -> str | None:
    """Re-pin `peer`'s key if its descriptor shows a verified rotation from the pinned key.
    Returns the new key, or None when the pinned key is still the peer's. Raises
    VerificationError (and records it in `last_error`) when the peer serves a key that no
    verified chain leads to."""
    with node.db.read() as session:
        row = store.get_peer(session, peer)
        if row is None:
            raise NotFound(f"no peer {peer!r}")
        url, pinned_text = row.url, row.verifier_key
    descriptor = fetch(url)
    served = descriptor.get("verifier_key")
    if served == pinned_text:
        return None
    from app.services.peers import check_descriptor

    pinned = VerifierKey.parse(pinned_text)
    try:
        if not isinstance(served, str):
            raise VerificationError("the descriptor names no verifier key")
        new = VerifierKey.parse(served)
        if new.origin != peer:
            raise VerificationError(f"the descriptor is for {new.origin!r}")
        chain = walk_chain(pinned, served, descriptor.get("rotations") or [])
        check_descriptor(descriptor, new)
    except (VerificationError, SignetError, ValueError) as exc:
        message = (
            f"{peer} now serves key {served!r}, which no verified rotation from the pinned key "
            f"leads to ({exc}); check it out of band, then `signet peers set-key {peer} KEY`"
        )
        _record_error(node, peer, message)
        VERIFY_FAILURES.labels(peer, "rotation").inc()
        log.warning("%s", message)
        raise VerificationError(message) from None
    _repin(node, peer, pinned_text, served, "peer.key_rotated", {"rotations": chain})
    REPINS.labels(peer, "rotation").inc()
    return served


def set_key(node: Node, peer: str, key_text: str, fetch: FetchDescriptor) -> str:
    """Re-pin `peer` to a key the operator checked out of band. The descriptor at the peer's
    URL must be signed by it. The policy, cursor and counters are kept."""
    from app.services.peers import check_descriptor, parse_key

    key = parse_key(key_text)
    if key.origin != peer:
        raise InvalidInput("verifier_key", f"the key is for {key.origin!r}, not {peer!r}")
    with node.db.read() as session:
        row = store.get_peer(session, peer)
        if row is None:
            raise NotFound(f"no peer {peer!r}")
        url, old = row.url, row.verifier_key
    try:
        check_descriptor(fetch(url), key)
    except VerificationError as exc:
        raise InvalidInput("verifier_key", f"refused: {exc}") from None
    if old != str(key):
        _repin(node, peer, old, str(key), "peer.key_set", {})
        REPINS.labels(peer, "manual").inc()
    return str(key)


def _repin(node: Node, peer: str, old: str, new: str, kind: str, extra: dict[str, Any]) -> None:
    old_key = VerifierKey.parse(old)
    with transaction(node) as tx:
        row: PeerRow | None = store.get_peer(tx.session, peer)
        if row is None or row.verifier_key != old:
            return  # someone else re-pinned first
        row.verifier_key = new
        row.updated_at = utcnow()
        row.last_error = None
        tx.session.add(row)
        exists = tx.session.execute(
            select(PeerKeyRow).where(
                col(PeerKeyRow.origin) == peer, col(PeerKeyRow.key_id) == old_key.key_id
            )
        ).first()
        if exists is None:
            tx.session.add(
                PeerKeyRow(
                    origin=peer, key_id=old_key.key_id, verifier_key=old, retired_at=utcnow()
                )
            )
        tx.append(kind, {"peer": peer, "old_key": old, "new_key": new, **extra})
    log.info("%s %s: pinned key %s -> %s", kind, peer, old_key.key_id, new.split("+")[1])


def _record_error(node: Node, peer: str, message: str) -> None:
    try:
        with node.db.write() as session:
            row = store.get_peer(session, peer)
            if row is not None:
                row.last_error = message[:500]
                session.add(row)
    except Exception:  # bookkeeping must not hide the failure itself
        log.exception("could not record the key failure of %s", peer)


# --- when a peer's requests stop verifying ---------------------------------------------------


class Follower:
    """Runs `follow` for a peer in the background, at most one at a time per peer, when its
    signed requests stop verifying (its new key), so the next request is accepted."""

    def __init__(self, node: Node, fetch: FetchDescriptor) -> None:
        self.node = node
        self.fetch = fetch
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def join(self, timeout: float) -> None:
        """Wait (up to `timeout` s in all) for the follows in flight: called when the node
        stops, so none outlives it (its database and HTTP client are about to close)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def request_failed(self, peer: str, reason: str) -> None:
        with self.node.db.read() as session:
            if store.get_peer(session, peer) is None:
                return
        VERIFY_FAILURES.labels(peer, "request").inc()
        _record_error(self.node, peer, f"its requests do not verify under the pinned key: {reason}")
        with self._lock:
            if peer in self._busy:
                return
            self._busy.add(peer)
            thread = threading.Thread(
                target=self._run, args=(peer,), name=f"rekey-{peer}", daemon=True
            )
            self._threads.add(thread)
        thread.start()

    def _run(self, peer: str) -> None:
        try:
            follow(self.node, peer, self.fetch)
        except Exception as exc:
            log.warning("could not follow a key change of %s: %s", peer, exc)
        finally:
            with self._lock:
                self._busy.discard(peer)
                self._threads.discard(threading.current_thread())
