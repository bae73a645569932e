from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto.merkle import (
    MerkleTree,
    consistency_proof,
    consistency_proof_node_ids,
    empty_root,
    inclusion_proof,
    inclusion_proof_node_ids,
    leaf_hash,
    node_hash,
    nodes_completed_by_append,
    perfect_node_ids,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_leaves,
    root_hash,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from app.errors import ProofError

from ._vectors import b64, load, merkle_cases

ROOTS = load("merkle/root_hashes.json")
LEAVES = [bytes.fromhex(x) for x in ROOTS["leaf_inputs"]]
INCLUSION = merkle_cases("inclusion")
CONSISTENCY = merkle_cases("consistency")


# --- an independent reference, straight from the RFC 6962 definitions ---------------------


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return leaf_hash(d[0])
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def data(i: int) -> bytes:
    return i.to_bytes(4, "big")


# --- vectors -------------------------------------------------------------------------------


def test_root_hash_vectors() -> None:
    tree = MerkleTree()
    assert empty_root().hex() == ROOTS["root_hashes"][0]
    assert tree.root().hex() == ROOTS["root_hashes"][0]
    for n, leaf in enumerate(LEAVES, start=1):
        tree.append(leaf)
        expected = ROOTS["root_hashes"][n]
        assert tree.root().hex() == expected
        assert root_from_leaves([leaf_hash(x) for x in LEAVES[:n]]).hex() == expected
        assert ref_mth(LEAVES[:n]).hex() == expected
        for size in range(n + 1):
            assert tree.root(size).hex() == ROOTS["root_hashes"][size]


def test_vector_counts() -> None:
    assert len(INCLUSION) > 80 and len(CONSISTENCY) > 80
    assert sum(not c["wantErr"] for _, c in INCLUSION) == 6
    assert sum(not c["wantErr"] for _, c in CONSISTENCY) == 6


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [b64(p) for p in case["proof"] or []]


@pytest.mark.parametrize(("name", "case"), INCLUSION, ids=[n for n, _ in INCLUSION])
def test_inclusion_vectors(name: str, case: dict[str, Any]) -> None:
    args = (b64(case["leafHash"]), case["leafIdx"], case["treeSize"], _proof(case))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, b64(case["root"]))
    else:
        verify_inclusion(*args, b64(case["root"]))


@pytest.mark.parametrize(("name", "case"), CONSISTENCY, ids=[n for n, _ in CONSISTENCY])
def test_consistency_vectors(name: str, case: dict[str, Any]) -> None:
    args = (case["size1"], case["size2"], _proof(case), b64(case["root1"]), b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_happy_path_proofs_are_what_we_generate() -> None:
    tree = MerkleTree(LEAVES)
    for _, case in INCLUSION:
        if not case["wantErr"] and case["treeSize"] > 1:
            got = tree.inclusion_proof(case["leafIdx"], case["treeSize"])
            assert got == _proof(case)
            assert tree.root(case["treeSize"]) == b64(case["root"])
    for _, case in CONSISTENCY:
        if not case["wantErr"] and case["size1"] < case["size2"]:
            assert tree.consistency_proof(case["size1"], case["size2"]) == _proof(case)


# --- size 0 decision -----------------------------------------------------------------------


def test_consistency_from_size_zero() -> None:
    tree = MerkleTree([data(i) for i in range(5)])
    with pytest.raises(ProofError, match="size 0"):
        verify_consistency(0, 5, [], empty_root(), tree.root())
    verify_consistency(0, 5, [], empty_root(), tree.root(), allow_empty_old=True)
    verify_consistency(0, 0, [], empty_root(), empty_root(), allow_empty_old=True)
    with pytest.raises(ProofError):
        verify_consistency(0, 5, [tree.root()], empty_root(), tree.root(), allow_empty_old=True)
    with pytest.raises(ProofError):
        verify_consistency(0, 5, [], tree.root(), tree.root(), allow_empty_old=True)
    with pytest.raises(ProofError):
        verify_consistency(0, 0, [], empty_root(), tree.root(), allow_empty_old=True)


def test_error_messages_carry_both_roots() -> None:
    tree = MerkleTree([data(i) for i in range(7)])
    wrong = bytes(32)
    with pytest.raises(ProofError) as exc:
        verify_inclusion(tree.leaf_hash(3), 3, 7, tree.inclusion_proof(3), wrong)
    assert wrong.hex() in str(exc.value) and tree.root().hex() in str(exc.value)
    with pytest.raises(ProofError) as exc:
        verify_consistency(3, 7, tree.consistency_proof(3), tree.root(3), wrong)
    assert wrong.hex() in str(exc.value) and tree.root().hex() in str(exc.value)


# --- storage model -------------------------------------------------------------------------


class CountingStore:
    """Perfect subtrees in a dict, as a database would hold them; counts reads."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0
        self.reads: list[tuple[int, int]] = []

    def get(self, level: int, index: int) -> bytes:
        self.reads.append((level, index))
        return self.nodes[(level, index)]

    def append(self, leaf: bytes) -> None:
        self.reads.clear()
        rows = nodes_completed_by_append(self.size, leaf, self.get)
        assert len(self.reads) <= max(1, self.size.bit_length())
        for level, index, h in rows:
            assert (level, index) not in self.nodes  # append-only: never rewritten
            self.nodes[(level, index)] = h
        self.size += 1


def _bound(n: int) -> int:
    return 2 * max(1, n.bit_length()) + 2


def test_store_holds_exactly_the_perfect_subtrees() -> None:
    store = CountingStore()
    leaves = [data(i) for i in range(37)]
    for leaf in leaves:
        store.append(leaf)
    expected = {(k, i) for k in range(6) for i in range(37 >> k)}
    assert set(store.nodes) == expected
    for (k, i), h in store.nodes.items():
        assert h == ref_mth(leaves[i << k : (i + 1) << k])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.data())
def test_proofs_for_random_sizes(n: int, draw: st.DataObject) -> None:
    leaves = [data(i) for i in range(n)]
    tree = MerkleTree(leaves)
    store = CountingStore()
    for leaf in leaves:
        store.append(leaf)
    size = draw.draw(st.integers(1, n), label="size")
    index = draw.draw(st.integers(0, size - 1), label="index")
    size1 = draw.draw(st.integers(1, size), label="size1")
    root = ref_mth(leaves[:size])

    assert tree.root(size) == root
    store.reads.clear()
    assert root_hash(size, store.get) == root
    assert len(store.reads) <= _bound(size)

    # Inclusion: in-memory tree, perfect-subtree store and the RFC reference all agree.
    expected = ref_path(index, leaves[:size])
    assert tree.inclusion_proof(index, size) == expected
    store.reads.clear()
    assert inclusion_proof(index, size, store.get) == expected
    assert len(store.reads) <= _bound(size)
    assert set(store.reads) <= set(inclusion_proof_node_ids(index, size))
    verify_inclusion(leaf_hash(leaves[index]), index, size, expected, root)
    assert root_from_inclusion_proof(leaf_hash(leaves[index]), index, size, expected) == root

    # Consistency likewise.
    root1 = ref_mth(leaves[:size1])
    expected_c = ref_subproof(size1, leaves[:size], True)
    assert tree.consistency_proof(size1, size) == expected_c
    store.reads.clear()
    assert consistency_proof(size1, size, store.get) == expected_c
    assert len(store.reads) <= 2 * _bound(size)
    assert set(store.reads) <= set(consistency_proof_node_ids(size1, size))
    verify_consistency(size1, size, expected_c, root1, root)
    if size1 < size:
        assert root_from_consistency_proof(size1, size, expected_c, root1) == root


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 300), st.data())
def test_any_bit_flip_in_proof_or_root_is_rejected(n: int, draw: st.DataObject) -> None:
    tree = MerkleTree([data(i) for i in range(n)])
    index = draw.draw(st.integers(0, n - 1), label="index")
    proof = tree.inclusion_proof(index)
    leaf, root = tree.leaf_hash(index), tree.root()
    if proof:
        which = draw.draw(st.integers(0, len(proof) - 1), label="proof element")
        bit = draw.draw(st.integers(0, 255), label="bit")
        bad = [*proof[:which], _flip(proof[which], bit), *proof[which + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, n, bad, root)
    bit = draw.draw(st.integers(0, 255), label="root bit")
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, n, proof, _flip(root, bit))
    with pytest.raises(ProofError):
        verify_inclusion(_flip(leaf, bit), index, n, proof, root)

    size1 = draw.draw(st.integers(1, n - 1), label="size1")
    cproof = tree.consistency_proof(size1)
    root1 = tree.root(size1)
    which = draw.draw(st.integers(0, len(cproof) - 1), label="cproof element")
    bad = [*cproof[:which], _flip(cproof[which], bit), *cproof[which + 1 :]]
    with pytest.raises(ProofError):
        verify_consistency(size1, n, bad, root1, root)
    with pytest.raises(ProofError):
        verify_consistency(size1, n, cproof, _flip(root1, bit), root)
    with pytest.raises(ProofError):
        verify_consistency(size1, n, cproof, root1, _flip(root, bit))
    with pytest.raises(ProofError):
        verify_consistency(size1, n, cproof[:-1], root1, root)
    with pytest.raises(ProofError):
        verify_consistency(size1, n, [*cproof, root], root1, root)


def test_node_ids_are_exactly_the_reads() -> None:
    for n in range(1, 70):
        store = CountingStore()
        for i in range(n):
            store.append(data(i))
        for index in range(n):
            store.reads.clear()
            inclusion_proof(index, n, store.get)
            assert set(store.reads) == set(inclusion_proof_node_ids(index, n))
        for size1 in range(1, n + 1):
            store.reads.clear()
            consistency_proof(size1, n, store.get)
            assert set(store.reads) == set(consistency_proof_node_ids(size1, n))


def test_subtree_hash_any_range() -> None:
    leaves = [data(i) for i in range(21)]
    tree = MerkleTree(leaves)
    for start in range(21):
        for end in range(start + 1, 22):
            assert subtree_hash(start, end, tree.get) == ref_mth(leaves[start:end])
            assert len(perfect_node_ids(start, end)) >= 1
    with pytest.raises(ValueError):
        subtree_hash(3, 3, tree.get)


def test_bad_arguments() -> None:
    tree = MerkleTree([data(i) for i in range(4)])
    with pytest.raises(ValueError):
        tree.inclusion_proof(4)
    with pytest.raises(ValueError):
        tree.consistency_proof(0)
    with pytest.raises(ValueError):
        tree.root(5)
    with pytest.raises(ProofError):
        root_from_inclusion_proof(b"short", 0, 4, tree.inclusion_proof(0))
    with pytest.raises(ProofError):
        verify_consistency(3, 2, [], tree.root(3), tree.root(2))
