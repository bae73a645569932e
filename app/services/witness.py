"""Witnessing (C2SP tlog-witness): cosigning peers' checkpoints, and getting ours cosigned.

As a witness, `add_checkpoint` decides a peer's request with `app.crypto.witness` and stores
the new state in the same transaction as the check, so two concurrent requests cannot roll
the state back. A log that shows us two roots for one size (or a smaller size than we
cosigned) is refused; an equivocation is kept as evidence (table + `equivocation` log entry).

As a log, `request_cosignatures` sends our latest checkpoint to every current peer with a
consistency proof from the size that peer last cosigned, verifies the cosignature it returns
against the peer's pinned key, and keeps it; `cosigned_checkpoint` serves the note with the
cosignatures we hold.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

from app.crypto import merkle
from app.crypto.checkpoint import (
    cosignature_verifier_key,
    open_checkpoint,
    parse_cosignature,
    verify_cosignature,
)
from app.crypto.errors import EquivocationError
from app.crypto.keys import VerifierKey
from app.crypto.merkle import RootHash
from app.crypto.witness import (
    WitnessState,
    add_checkpoint,
    format_add_checkpoint_body,
    parse_add_checkpoint_body,
)
from app.errors import Forbidden, SignetError
from app.federation.client import PeerClient
from app.services import log as exchange_log
from app.services.duties import PeerTasks
from app.services.node import Node
from app.services.tx import transaction
from app.storage import log as log_store
from app.storage import logscan
from app.storage import peers as store
from app.storage.models import WitnessStateRow
from app.storage.types import utcnow

log = logging.getLogger("signet.witness")


def witness_key_of(verifier_key: str) -> VerifierKey:
    """A node's cosignature (0x04) key from its pinned note (0x01) key: same Ed25519 key."""
    key = VerifierKey.parse(verifier_key)
    return VerifierKey.parse(cosignature_verifier_key(key.origin, key.public_key), alg=0x04)


def add_checkpoint_request(node: Node, peer: str, body: bytes) -> str:
    """Decide a peer's add-checkpoint; returns the cosignature line(s) to answer with.

    Raises the `app.crypto.witness` errors (WitnessConflict -> 409 with the known size).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        from app.crypto.errors import MalformedError

        raise MalformedError("add-checkpoint", "body is not UTF-8") from None
    request = parse_add_checkpoint_body(text)
    if request.origin != peer:
        raise Forbidden(f"{peer} may only ask us to cosign its own log, not {request.origin!r}")
    evidence: EquivocationError | None = None
    line = ""
    with transaction(node) as tx:
        row = store.get_peer(tx.session, peer)
        keys = [VerifierKey.parse(row.verifier_key)] if row is not None else []
        stored = store.witness_state(tx.session, peer)
        state = (
            WitnessState(stored.origin, stored.size, RootHash(stored.root_hash), stored.note)
            if stored is not None
            else None
        )
        try:
            result = add_checkpoint(request, state, keys, node.key, node.origin, int(time.time()))
        except EquivocationError as exc:
            evidence = exc
            cosigned, conflicting = exc.evidence
            store.save_equivocation(tx.session, exc.origin, exc.known_size, cosigned, conflicting)
            tx.append(
                "equivocation",
                {"log": exc.origin, "size": exc.known_size, "notes": [cosigned, conflicting]},
            )
        else:
            new = result.state
            store.save_witness_state(
                tx.session,
                WitnessStateRow(
                    origin=new.origin,
                    size=new.size,
                    root_hash=new.root_hash,
                    note=new.checkpoint_note,
                    updated_at=utcnow(),
                ),
            )
            line = result.cosignature
    if evidence is not None:
        log.error("EQUIVOCATION by %s at size %d: evidence stored", peer, evidence.known_size)
        raise evidence
    return line


@dataclass
class CosignResult:
    peer: str
    size: int
    ok: bool
    error: str | None = None


def request_cosignatures(
    node: Node, client: PeerClient, tasks: PeerTasks | None = None
) -> list[CosignResult]:
    """Ask every current peer to cosign our latest checkpoint (if it has not already).

    With `tasks`, each peer is asked on its own thread (at most one request in flight per peer)
    and this returns at once with no results: the background duty, where one slow witness must
    not hold up the others. Without, peers are asked one after another (CLI and tests).
    """
    cp = exchange_log.latest_checkpoint(node)
    with node.db.read() as session:
        peers = store.list_peers(session)
        have = {c.witness for c in store.cosignatures(session, cp.size)}
    results = []
    for peer in peers:
        if peer.origin in have:
            continue
        ask = functools.partial(
            _ask,
            node,
            client,
            peer.origin,
            peer.url,
            peer.verifier_key,
            peer.witness_size,
            cp.size,
            cp.note,
        )
        if tasks is not None:
            tasks.submit(peer.origin, ask)
        else:
            results.append(ask())
    return results


def _proof(node: Node, old: int, new: int) -> list[bytes]:
    if old == 0 or old == new:
        return []
    with node.db.read() as session:
        reader = logscan.NodeReader(session)
        reader.prefetch(merkle.consistency_proof_node_ids(old, new))
        return merkle.consistency_proof(old, new, reader)


def _ask(
    node: Node,
    client: PeerClient,
    peer: str,
    url: str,
    verifier_key: str,
    old: int,
    size: int,
    note: str,
) -> CosignResult:
    try:
        for _ in range(2):  # a 409 tells us the size the peer holds; retry once from it
            if old > size:
                raise SignetError(f"{peer} cosigned size {old}, beyond our checkpoint {size}")
            body = format_add_checkpoint_body(old, _proof(node, old, size), note)
            resp = client.add_checkpoint(url, body)
            if resp.status_code == 409 and resp.headers.get("content-type", "").startswith(
                "text/x.tlog.size"
            ):
                text = resp.text.strip()
                if not text.isdigit():
                    raise SignetError(f"{peer} answered 409 without a usable size")
                old = int(text)
                continue
            if resp.status_code != 200:
                raise SignetError(f"{peer} answered {resp.status_code}: {resp.text[:200]}")
            cp = open_checkpoint(note, node.key.verifier(node.origin))
            wkey = witness_key_of(verifier_key)
            lines = [ln for ln in resp.text.splitlines() if ln.strip()]
            if not lines:
                raise SignetError(f"{peer} returned no cosignature")
            good = ""
            for ln in lines:
                cosig = parse_cosignature(ln)
                if (cosig.name, cosig.key_hash) == (wkey.origin, wkey.key_hash):
                    verify_cosignature(cp, cosig, wkey)
                    good = cosig.line()
            if not good:
                raise SignetError(f"{peer} returned no cosignature under its pinned key")
            with node.db.write() as session:
                store.save_cosignature(session, size, peer, good)
                row = store.get_peer(session, peer)
                if row is not None:
                    row.witness_size = size
                    row.witness_error = None
                    session.add(row)
            return CosignResult(peer, size, True)
        raise SignetError(f"{peer} keeps answering 409")
    except Exception as exc:  # any failure is the peer's witness status, never a dead loop
        error = f"{type(exc).__name__}: {exc}"[:500]
        with node.db.write() as session:
            row = store.get_peer(session, peer)
            if row is not None:
                row.witness_error = error
                session.add(row)
        log.info("cosigning by %s failed: %s", peer, error)
        return CosignResult(peer, size, False, error)


def cosigned_checkpoint(node: Node, *, prefer_witnessed: bool = False) -> str:
    """Our latest checkpoint note with every cosignature we hold for it appended.

    With `prefer_witnessed`, the newest checkpoint that peers have cosigned, if any: a fresh
    checkpoint is only seconds from being cosigned, and an auditor checking a quorum wants one
    that already is.
    """
    cp = exchange_log.latest_checkpoint(node)
    with node.db.read() as session:
        lines = [c.line for c in store.cosignatures(session, cp.size)]
        if prefer_witnessed and not lines:
            size = store.latest_cosigned_size(session)
            older = log_store.checkpoint_at(session, size) if size is not None else None
            if older is not None:
                cp = older
                lines = [c.line for c in store.cosignatures(session, older.size)]
    return cp.note + "".join(lines)
