"""The auditor's copy of a log's Merkle tree: leaf hashes in one flat buffer.

32 bytes per entry (32 MB per million) instead of a Python object per node; roots of any
prefix are recomputed from the leaves in O(n) with an O(log n) stack of perfect subtrees,
which is all an auditor that has every entry needs.
"""

from __future__ import annotations

from app.crypto import merkle


class LeafHashes:
    """Append-only leaf hashes with the running root of the whole sequence."""

    def __init__(self) -> None:
        self._buf = bytearray()
        # Perfect subtrees of the current size, largest first: (height, hash).
        self._stack: list[tuple[int, bytes]] = []

    @property
    def size(self) -> int:
        return len(self._buf) // merkle.HASH_SIZE

    def append(self, leaf_hash: bytes) -> None:
        self._buf += leaf_hash
        _push(self._stack, leaf_hash)

    def leaf(self, index: int) -> bytes:
        return bytes(self._buf[index * 32 : index * 32 + 32])

    def root(self) -> merkle.RootHash:
        """The RFC 6962 root of all leaves so far."""
        return _fold(self._stack)

    def root_at(self, size: int) -> merkle.RootHash:
        """The root of the first `size` leaves (O(size))."""
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} outside 0..{self.size}")
        stack: list[tuple[int, bytes]] = []
        view = memoryview(self._buf)
        for i in range(size):
            _push(stack, bytes(view[i * 32 : i * 32 + 32]))
        return _fold(stack)


def _push(stack: list[tuple[int, bytes]], h: bytes) -> None:
    height = 0
    # Equal-height neighbours merge, exactly as the perfect subtrees of the log complete.
    while stack and stack[-1][0] == height:
        _, left = stack.pop()
        h = merkle.node_hash(left, h)
        height += 1
    stack.append((height, h))


def _fold(stack: list[tuple[int, bytes]]) -> merkle.RootHash:
    if not stack:
        return merkle.empty_root()
    # The right edge: smaller subtrees hang off the right of larger ones.
    acc = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        acc = merkle.node_hash(left, acc)
    return merkle.RootHash(acc)
