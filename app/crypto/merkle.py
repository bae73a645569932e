"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.

Storage model: a log stores only the hashes of *perfect* subtrees, addressed
`(level, index)`: level 0 holds leaf hashes, and node `(k, i)` covers leaves
`[i * 2**k, (i + 1) * 2**k)`. Each append adds one leaf hash plus one node per subtree it
completes, and is never rewritten. Every node of an RFC 6962 tree of any size is either
such a perfect subtree or a right-edge node made of O(log n) of them, so roots and proofs
for any size come from O(log n) reads.

Proof code never touches storage: callers pass `get(level, index) -> hash`, or ask first
which nodes are needed (`*_node_ids`) and fetch them in one query.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import NewType

from app.errors import ProofError

__all__ = [
    "HASH_SIZE",
    "GetNode",
    "MerkleTree",
    "NodeId",
    "RootHash",
    "consistency_proof",
    "consistency_proof_node_ids",
    "consistency_proof_ranges",
    "empty_root",
    "inclusion_proof",
    "inclusion_proof_node_ids",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "nodes_completed_by_append",
    "perfect_node_ids",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaves",
    "root_hash",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

RootHash = NewType("RootHash", bytes)
"""A 32-byte Merkle tree head hash."""

NodeId = tuple[int, int]
"""`(level, index)` of a perfect subtree."""

GetNode = Callable[[int, int], bytes]
"""`get(level, index)`: the stored hash of a perfect subtree."""

HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def empty_root() -> RootHash:
    """The root of the empty tree, SHA-256 of nothing."""
    return RootHash(hashlib.sha256(b"").digest())


def root_from_leaves(hashes: Sequence[bytes]) -> RootHash:
    """The RFC 6962 root over leaf hashes (O(n); for tests and small trees)."""
    if not hashes:
        return empty_root()
    level = list(hashes)
    while len(level) > 1:
        # Pairing left to right and promoting an odd last node unchanged builds exactly
        # the RFC 6962 tree (split at the largest power of two below n).
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return RootHash(level[0])


# --- perfect-subtree storage ------------------------------------------------------------


def nodes_completed_by_append(
    size_before: int, leaf: bytes, get: GetNode
) -> list[tuple[int, int, bytes]]:
    """The `(level, index, hash)` rows to store when leaf number `size_before` is appended.

    `leaf` is the entry's data (hashed here with `leaf_hash`). Returns the level-0 leaf hash
    and every perfect subtree the leaf completes, reading one left sibling per completed
    level (at most log2(n) reads).
    """
    if size_before < 0:
        raise ValueError(f"size_before must be >= 0, got {size_before}")
    index = size_before
    h = leaf_hash(leaf)
    rows = [(0, index, h)]
    level = 0
    while index & 1:
        h = node_hash(get(level, index - 1), h)
        level += 1
        index >>= 1
        rows.append((level, index, h))
    return rows


def perfect_node_ids(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees that compose `subtree_hash(start, end)`, left to right."""
    _check_range(start, end)
    ids: list[NodeId] = []
    _collect(start, end, ids)
    return ids


def subtree_hash(start: int, end: int, get: GetNode) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees.

    O(log n) reads whenever `start` is a multiple of the smallest power of two >= end -
    start, which holds for every node of an RFC 6962 tree (the only ranges proofs use).
    Other ranges are still correct, just slower.
    """
    _check_range(start, end)
    return _mth(start, end, get)


def root_hash(size: int, get: GetNode) -> RootHash:
    """The root of the tree of the first `size` leaves."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    return empty_root() if size == 0 else RootHash(_mth(0, size, get))


def _largest_power_of_two_below(n: int) -> int:
    # For n >= 2: the k of RFC 6962 (largest power of two strictly smaller than n).
    return 1 << ((n - 1).bit_length() - 1)


def _is_perfect(start: int, end: int) -> bool:
    n = end - start
    return n & (n - 1) == 0 and start % n == 0


def _mth(start: int, end: int, get: GetNode) -> bytes:
    if _is_perfect(start, end):
        n = end - start
        level = n.bit_length() - 1
        return get(level, start >> level)
    k = _largest_power_of_two_below(end - start)
    return node_hash(_mth(start, start + k, get), _mth(start + k, end, get))


def _collect(start: int, end: int, out: list[NodeId]) -> None:
    if _is_perfect(start, end):
        level = (end - start).bit_length() - 1
        out.append((level, start >> level))
        return
    k = _largest_power_of_two_below(end - start)
    _collect(start, start + k, out)
    _collect(start + k, end, out)


def _check_range(start: int, end: int) -> None:
    if not 0 <= start < end:
        raise ValueError(f"need 0 <= start < end, got [{start}, {end})")


# --- proofs as leaf ranges -------------------------------------------------------------


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 6962 PATH(index, D[0:size]) as leaf ranges `[start, end)`, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"need 0 <= index < size, got index={index} size={size}")
    siblings: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            siblings.append((start + k, end))
            end = start + k
        else:
            siblings.append((start, start + k))
            start = start + k
    siblings.reverse()
    return siblings


def consistency_proof_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """RFC 6962 PROOF(size1, D[0:size2]) as leaf ranges, in proof order.

    Defined for 0 < size1 <= size2 (empty when equal).
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"need 0 < size1 <= size2, got size1={size1} size2={size2}")
    appended: list[tuple[int, int]] = []
    start, end = 0, size2
    complete = True  # RFC 6962 SUBPROOF's b: is D[start:start+m] the whole first tree?
    m = size1
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            appended.append((start + k, end))
            end = start + k
        else:
            appended.append((start, start + k))
            start, m, complete = start + k, m - k, False
    head = [] if complete else [(start, end)]
    return head + appended[::-1]


def inclusion_proof_node_ids(index: int, size: int) -> list[NodeId]:
    """Every perfect subtree `inclusion_proof(index, size, get)` reads (no duplicates)."""
    return _node_ids(inclusion_proof_ranges(index, size))


def consistency_proof_node_ids(size1: int, size2: int) -> list[NodeId]:
    """Every perfect subtree `consistency_proof(size1, size2, get)` reads (no duplicates)."""
    return _node_ids(consistency_proof_ranges(size1, size2))


def _node_ids(ranges: Iterable[tuple[int, int]]) -> list[NodeId]:
    ids: dict[NodeId, None] = {}
    for start, end in ranges:
        ids.update(dict.fromkeys(perfect_node_ids(start, end)))
    return list(ids)


def inclusion_proof(index: int, size: int, get: GetNode) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves."""
    return [_mth(a, b, get) for a, b in inclusion_proof_ranges(index, size)]


def consistency_proof(size1: int, size2: int, get: GetNode) -> list[bytes]:
    """The RFC 9162 consistency proof from `size1` to `size2` (0 < size1 <= size2)."""
    return [_mth(a, b, get) for a, b in consistency_proof_ranges(size1, size2)]


# --- verification ------------------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _compare_roots(computed: bytes, expected: bytes, what: str) -> None:
    # Constant time out of habit; these are public values, so it is not a secret we protect.
    if not hmac.compare_digest(computed, expected):
        raise ProofError(f"{what}: computed root {computed.hex()} != expected {expected.hex()}")


def root_from_inclusion_proof(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes]
) -> RootHash:
    """Compute the root implied by an inclusion proof (RFC 9162 section 2.1.3.2).

    `leaf` is the leaf *hash*. Raises `ProofError` if the proof has the wrong shape.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")
        if sn == 0:
            raise ProofError(f"inclusion proof too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof too short: {len(proof)} hashes")
    return RootHash(r)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf hash `leaf` is at `index` in the tree `(size, root)`."""
    computed = root_from_inclusion_proof(leaf, index, size, proof)
    _compare_roots(computed, root, f"inclusion of leaf {index} at size {size}")


def root_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> RootHash:
    """Check a consistency proof against `root1` and return the size-`size2` root it implies.

    RFC 9162 section 2.1.4.2, for 0 < size1 < size2. Raises `ProofError` if the proof is
    malformed or does not reproduce `root1`.
    """
    if not 0 < size1 < size2:
        raise ProofError(f"need 0 < size1 < size2, got size1={size1} size2={size2}")
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to {size2}")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # The old tree is itself a perfect subtree of the new one: its root starts the path.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof too short: {len(proof)} hashes")
    _compare_roots(fr, root1, f"consistency proof from size {size1} (old root)")
    return RootHash(sr)


def verify_consistency(
    size1: int,
    size2: int,
    proof: Sequence[bytes],
    root1: bytes,
    root2: bytes,
    *,
    allow_empty_old: bool = False,
) -> None:
    """Check that the tree `(size2, root2)` extends `(size1, root1)`.

    Size 0 (decision): by default a proof from size 0 is refused, as in the RFC 9162 test
    vectors: it proves nothing, and a caller passing 0 usually lost its state. With
    `allow_empty_old=True` (tlog-witness `old 0`: a witness that has never cosigned this
    log), size1 = 0 is accepted with an empty proof and `root1` equal to `empty_root()`.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"need 0 <= size1 <= size2, got size1={size1} size2={size2}")
    if size1 == 0:
        if not allow_empty_old:
            raise ProofError("consistency from size 0 is refused (nothing to be consistent with)")
        if proof:
            raise ProofError(f"consistency from size 0 needs an empty proof, got {len(proof)}")
        _compare_roots(root1, empty_root(), "consistency from size 0 (old root must be empty)")
        if size2 == 0:
            _compare_roots(root2, empty_root(), "consistency at size 0")
        return
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof has {len(proof)} hashes")
        _compare_roots(root2, root1, f"consistency at equal size {size1}")
        return
    computed = root_from_consistency_proof(size1, size2, proof, root1)
    _compare_roots(computed, root2, f"consistency proof from size {size1} to {size2}")


# --- in-memory tree ----------------------------------------------------------------------


class MerkleTree:
    """An in-memory log of perfect-subtree levels, for tests and the offline auditor."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = []
        for data in leaves:
            self.append(data)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0]) if self._levels else 0

    def get(self, level: int, index: int) -> bytes:
        """The stored hash of perfect subtree `(level, index)`; `IndexError` if absent."""
        return self._levels[level][index]

    def append(self, data: bytes) -> int:
        """Append a leaf with this entry data; return its index."""
        index = self.size
        for level, i, h in nodes_completed_by_append(index, data, self.get):
            if level == len(self._levels):
                self._levels.append([])
            assert len(self._levels[level]) == i
            self._levels[level].append(h)
        return index

    def leaf_hash(self, index: int) -> bytes:
        """The hash of leaf `index`."""
        return self.get(0, index)

    def root(self, size: int | None = None) -> RootHash:
        """The root at `size` (default: the current size)."""
        return root_hash(self._size(size), self.get)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf `index` at `size` (default: current size)."""
        return inclusion_proof(index, self._size(size), self.get)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Consistency proof from `size1` to `size2` (default: current size)."""
        return consistency_proof(size1, self._size(size2), self.get)

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} outside 0..{self.size}")
        return size
