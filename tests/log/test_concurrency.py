"""Concurrent appends through `transaction()` leave one linear, gap-free log (both databases)."""

from __future__ import annotations

import json
import threading

from app.crypto import merkle
from app.crypto.canonical import canonical_json
from app.services import log as exchange_log
from app.services.node import Node
from app.services.tx import transaction
from app.storage import log as log_store

THREADS = 4
ROUNDS = 15


def check_linear_log(node: Node, expected: int | None = None) -> int:
    """Every index present once, leaves match entries, every proof verifies; returns size."""
    with node.db.read() as s:
        size = log_store.log_size(s)
        rows = log_store.entries(s, 0, size)
    assert [r.idx for r in rows] == list(range(size))
    if expected is not None:
        assert size == expected
    leaves = [merkle.leaf_hash(r.data.encode()) for r in rows]
    root = merkle.root_from_leaves(leaves)
    cp = exchange_log.publish_checkpoint(node)
    assert cp.size == size and cp.root_hash == root
    for i in range(size):
        _, proof = exchange_log.inclusion_proof(node, i, size)
        merkle.verify_inclusion(leaves[i], i, size, proof, root)
    for m in range(1, size + 1):
        proof = exchange_log.consistency_proof(node, m, size)
        merkle.verify_consistency(m, size, proof, merkle.root_from_leaves(leaves[:m]), root)
    for r in rows:
        assert canonical_json(json.loads(r.data)) == r.data.encode()
    return size


def test_threads_append_linearly(node: Node) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for n in range(ROUNDS):
                with transaction(node) as tx:
                    for k in range(1 + (n % 3)):  # 1..3 entries per transaction
                        tx.append("test", {"thread": t, "n": n, "k": k})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    per_thread = sum(1 + (n % 3) for n in range(ROUNDS))
    check_linear_log(node, THREADS * per_thread)
