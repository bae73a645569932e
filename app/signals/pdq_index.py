"""PDQ index: exact "every code within Hamming distance t" over 256-bit hashes.

Multi-index hashing (Norouzi, Punjani and Fleet): a code is cut into 16 chunks of 16 bits and
each chunk gets its own inverted index. Write t = 16·r + a with 0 <= a < 16. If two codes are
within t, then one of the first a + 1 chunks differs by at most r bits, or one of the other
chunks differs by at most r - 1 bits (otherwise the distance would be at least
(a + 1)(r + 1) + (15 - a)·r = t + 1). So probing those chunks' values and their bit-flip
neighbours finds a superset of the answer, and an exact full-width distance on each candidate
keeps only true matches: recall is 100% by construction, never approximate. When the probes
would touch a large share of the index (large t, or skewed data piling codes into a few
buckets) the query scans instead; the answer is the same, only the cost differs.

Layout. An immutable *base* (`app.signals.pdq_base`: in memory, or a file every worker maps
read-only) holds codes sorted by key plus, per chunk, a CSR table: positions sorted by chunk
value and 65,537 offsets, so a bucket is a slice. A *compact* base keeps only the keys and
codes (1.125x the raw codes instead of 3.1x) and every query scans it, in C through FAISS's
Hamming range search; same answers, a different cost (docs/scaling.md, "PDQ index layouts").
Inserts go to an append-only *delta* that queries scan; deletes are tombstones. `compact()`
(also run automatically when the delta and tombstones outgrow a fraction of the base) folds
both into a new base, built outside the writer lock: writes made meanwhile are kept in a
journal and replayed onto the new base.

Concurrency: one writer at a time (a lock, held briefly), readers never block. A tombstone is
the epoch at which the entry died; a reader takes the current snapshot (base, delta length,
epoch) and sees an entry as alive while its death epoch is later than the snapshot's. Writers
only append past a snapshot's delta length or mark a base entry dead with the new epoch, and
compaction builds new arrays, so a reader's snapshot never changes under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from app.errors import InvalidInput
from app.signals.pdq_base import COMPACT, KINDS, MULTI_INDEX, Base, BaseFileError, file_id

__all__ = [
    "CODE_BYTES",
    "COMPACT",
    "DEFAULT_THRESHOLD",
    "MULTI_INDEX",
    "InvalidPDQInput",
    "PDQIndex",
    "SharedLoad",
    "hamming_distance",
    "pdq_hex_to_bytes",
]

CODE_BYTES: Final = 32
CODE_BITS: Final = 256
DEFAULT_THRESHOLD: Final = 31

_CHUNKS: Final = 16
_CHUNK_VALUES: Final = 1 << 16
_OFFSETS_PER_CHUNK: Final = _CHUNK_VALUES + 1
_WORDS: Final = 4  # uint64 words per code
_NEVER: Final = np.iinfo(np.int64).max  # death epoch of a live entry
_SCAN_BLOCK: Final = 16384  # rows per scan block: 512 KiB of codes, stays in L2
_CANDIDATE_BUDGET: Final = 1 << 21
# Bytes of popcounts -> sum in the top byte (each byte <= 64, so no carry between bytes). The
# sum wraps for exactly 256 (all four words fully different); `_fix_full_distance` repairs it.
_BYTE_SUM: Final = np.uint32(0x01010101)
_ALL_DIFFERENT: Final = np.uint32(0x40404040)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

# Every 16-bit mask ordered by popcount: the masks within radius r are a prefix of this.
_POPCOUNT16 = np.bitwise_count(np.arange(_CHUNK_VALUES, dtype=np.uint16))
_MASKS_BY_WEIGHT = np.argsort(_POPCOUNT16, kind="stable").astype(np.int64)
_BALL_SIZE = np.cumsum(np.bincount(_POPCOUNT16, minlength=17))  # masks within radius r
_RELEASE_WAIT: Final = 10.0  # seconds a compaction waits for queries on the base it replaced
_COMPARE_CHUNK = 1 << 16  # keys compared with a shared base file at a time (SharedLoad)

Int64Array = NDArray[np.int64]
U64Array = NDArray[np.uint64]
U8Array = NDArray[np.uint8]


class InvalidPDQInput(InvalidInput, ValueError):
    """A PDQ code, key or threshold is unusable. Also a `ValueError` for callers outside Signet."""


# --------------------------------------------------------------------------- input helpers


def pdq_hex_to_bytes(value: str) -> bytes:
    """64 hex digits (either case) -> the 32-byte code."""
    if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
        raise InvalidPDQInput("code", "a PDQ hash is 64 hexadecimal digits")
    return bytes.fromhex(value)


def _code_bytes(code: object) -> bytes:
    if isinstance(code, str):
        return pdq_hex_to_bytes(code)
    if isinstance(code, bytes | bytearray | memoryview):
        raw = bytes(code)
        if len(raw) != CODE_BYTES:
            raise InvalidPDQInput("code", f"a PDQ hash is {CODE_BYTES} bytes, got {len(raw)}")
        return raw
    raise InvalidPDQInput("code", "a PDQ hash is 32 bytes or 64 hex digits")


def hamming_distance(a: bytes | str, b: bytes | str) -> int:
    """Number of differing bits between two PDQ codes (bytes or hex)."""
    return (
        int.from_bytes(_code_bytes(a), "big") ^ int.from_bytes(_code_bytes(b), "big")
    ).bit_count()


def _check_threshold(threshold: object) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int | np.integer):
        raise InvalidPDQInput("threshold", "must be an integer")
    t = int(threshold)
    if not 0 <= t <= CODE_BITS:
        raise InvalidPDQInput("threshold", f"must be within 0..{CODE_BITS}, got {t}")
    return t


def _check_key(key: object) -> int:
    if isinstance(key, bool) or not isinstance(key, int | np.integer):
        raise InvalidPDQInput("key", "must be an integer")
    k = int(key)
    if not -(1 << 63) <= k < (1 << 63):
        raise InvalidPDQInput("key", "must fit in a signed 64-bit integer")
    return k


def _check_codes(codes: object, field: str = "codes") -> U64Array:
    """A (n, 32) uint8 array (or a sequence of bytes/hex codes) -> contiguous (n, 4) uint64."""
    if not isinstance(codes, np.ndarray):
        if isinstance(codes, str | bytes) or not isinstance(codes, Sequence):
            raise InvalidPDQInput(field, "expected a (n, 32) uint8 array of codes")
        raw = b"".join(_code_bytes(c) for c in codes)
        codes = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CODE_BYTES)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != CODE_BYTES:
        raise InvalidPDQInput(
            field, f"expected a (n, 32) uint8 array, got {codes.dtype}{codes.shape}"
        )
    words: U64Array = np.ascontiguousarray(codes).view(np.uint64)
    return words


def _check_keys(keys: object, n: int) -> Int64Array:
    arr = np.asarray(keys)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidPDQInput("keys", f"expected {n} keys in one dimension, got shape {arr.shape}")
    if arr.dtype.kind == "u":
        if arr.size and int(arr.max()) >= (1 << 63):
            raise InvalidPDQInput("keys", "must fit in a signed 64-bit integer")
    elif arr.dtype.kind != "i":
        raise InvalidPDQInput("keys", f"must be integers, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _last_of_each_key(keys: Int64Array, codes: U64Array) -> tuple[Int64Array, U64Array]:
    """Drop all but the last occurrence of each key (a re-added key replaces the earlier one)."""
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        # Strictly increasing (a start-up load, in row-id order) has no repeats: np.unique
        # would sort a copy of every key to find none (~30 B a code at the load's peak).
        return keys, codes
    rev_unique, rev_first = np.unique(keys[::-1], return_index=True)
    if rev_unique.size == keys.size:
        return keys, codes
    keep = np.sort(keys.size - 1 - rev_first)
    return keys[keep], codes[keep]


# --------------------------------------------------------------------------- distance kernels


def _fix_full_distance(dist8: NDArray[np.uint32], bytes4: NDArray[np.uint32]) -> Int64Array:
    dist = dist8.astype(np.int64)
    dist[bytes4 == _ALL_DIFFERENT] = CODE_BITS
    return dist


def _within(xored: U64Array, threshold: int) -> tuple[NDArray[np.intp], Int64Array]:
    """Rows of `xored` (code ^ query, (k, 4)) with at most `threshold` bits set, and counts."""
    counts = np.bitwise_count(xored)  # (k, 4) uint8, each <= 64
    packed = counts.view(np.uint32).reshape(-1)
    packed_sum = packed * _BYTE_SUM
    packed_sum >>= np.uint32(24)
    hit = np.flatnonzero(packed_sum <= threshold)
    dist = _fix_full_distance(packed_sum[hit], packed[hit])
    if threshold < CODE_BITS:
        ok = dist <= threshold
        if not ok.all():
            hit, dist = hit[ok], dist[ok]
    return hit, dist


def _scan(codes: U64Array, query: U64Array, threshold: int) -> tuple[Int64Array, Int64Array]:
    """Brute force, in cache-sized blocks: positions within `threshold` of `query`, distances."""
    n = codes.shape[0]
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    block = min(n, _SCAN_BLOCK)
    tile = np.tile(query, (block, 1))  # a real copy: xor against it runs as one long loop
    scratch = np.empty((block, _WORDS), np.uint64)
    found_pos: list[Int64Array] = []
    found_dist: list[Int64Array] = []
    for start in range(0, n, block):
        part = codes[start : start + block]
        m = part.shape[0]
        hit, dist = _within(np.bitwise_xor(part, tile[:m], out=scratch[:m]), threshold)
        if hit.size:
            found_pos.append(hit.astype(np.int64) + start)
            found_dist.append(dist)
    if not found_pos:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_pos), np.concatenate(found_dist)


def scan_codes(
    codes: np.ndarray, query: bytes | str, threshold: int = DEFAULT_THRESHOLD
) -> list[tuple[int, int]]:
    """Reference brute force over a (n, 32) uint8 array: [(row, distance)] sorted like `query`.

    Used by tests and benchmarks as the baseline; the index answers the same without scanning.
    """
    t = _check_threshold(threshold)
    words = _check_codes(codes)
    q = np.frombuffer(_code_bytes(query), dtype=np.uint64)
    pos, dist = _scan(words, q, t)
    order = np.lexsort((pos, dist))
    return list(zip(pos[order].tolist(), dist[order].tolist(), strict=True))


def _range_scan(
    head: U64Array, tail: U64Array, queries: U64Array, threshold: int
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """(query row, position, distance) of every code within `threshold` of each query.

    The scan of a compact base, whose codes are split into halves: a code within t bits of
    the query has its first half within t bits of the query's, so the heads alone are scanned
    and only the survivors' tails are read (for unrelated codes a 128-bit head within 31 bits
    has a chance of ~1e-8). FAISS's Hamming range search reads the heads where they are (a
    read-only mapping is fine: no copy) and releases the GIL; per code it is ~2.7x numpy's own
    scan (`_scan`) and the half-width scan ~1.6x the full one (bench/pdq_index.py).
    """
    faiss = _faiss()
    assert head.flags.c_contiguous and tail.shape == head.shape
    n, b = head.shape[0], queries.shape[0]
    q_head = np.ascontiguousarray(queries[:, : _WORDS // 2])
    result = faiss.RangeSearchResult(b)
    # FAISS keeps distances strictly below its radius: threshold + 1 keeps those <= threshold.
    faiss.hamming_range_search(
        faiss.swig_ptr(q_head.view(np.uint8)),
        faiss.swig_ptr(head.view(np.uint8)),
        b,
        n,
        threshold + 1,
        CODE_BYTES // 2,
        result,
    )
    lims = faiss.rev_swig_ptr(result.lims, b + 1).astype(np.int64)
    found = int(lims[-1])
    if found == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    pos = faiss.rev_swig_ptr(result.labels, found).astype(np.int64)
    dist = faiss.rev_swig_ptr(result.distances, found).astype(np.int64)
    qid = np.repeat(np.arange(b, dtype=np.int64), np.diff(lims))
    del result  # FAISS's buffers: copied out above
    tails = np.bitwise_xor(tail[pos], queries[qid, _WORDS // 2 :])
    dist += np.bitwise_count(tails).sum(axis=1, dtype=np.int64)
    keep = dist <= threshold
    return qid[keep], pos[keep], dist[keep]


_FAISS: Any = None


def _faiss() -> Any:
    """FAISS, imported on first use: only compact bases need it, and it loads OpenMP."""
    global _FAISS
    if _FAISS is None:
        import faiss

        # One OpenMP thread: a node's parallelism is its workers (one per core) and their
        # request threads; OpenMP teams in every worker would oversubscribe the cores, and
        # their idle threads spin after each parallel region.
        faiss.omp_set_num_threads(1)
        _FAISS = faiss
    return _FAISS


# --------------------------------------------------------------------------- probe plans


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which (chunk, flip mask) pairs to probe for one threshold; `None` arrays mean scan."""

    chunk: Int64Array | None  # chunk number of each probe
    mask: Int64Array | None  # bits flipped in that chunk's value
    offset_base: Int64Array | None  # chunk * 65537, precomputed


_PLANS: dict[tuple[int, float], _Plan] = {}


def _plan(threshold: int, max_probe_share: float) -> _Plan:
    cached = _PLANS.get((threshold, max_probe_share))
    if cached is not None:
        return cached
    radius, extra = divmod(threshold, _CHUNKS)
    chunks: list[Int64Array] = []
    masks: list[Int64Array] = []
    probes = 0
    for c in range(_CHUNKS):
        r = radius if c <= extra else radius - 1
        if r < 0:
            continue
        size = int(_BALL_SIZE[min(r, 16)])
        probes += size
        chunks.append(np.full(size, c, np.int64))
        masks.append(_MASKS_BY_WEIGHT[:size])
    if probes > max_probe_share * _CHUNK_VALUES or probes == 0:
        plan = _Plan(None, None, None)  # the probes alone would cover too much: scan
    else:
        chunk = np.concatenate(chunks)
        plan = _Plan(chunk, np.concatenate(masks), chunk * _OFFSETS_PER_CHUNK)
    _PLANS[(threshold, max_probe_share)] = plan
    return plan


# --------------------------------------------------------------------------- index structures


_EMPTY_BASE = Base.build(np.empty(0, np.int64), np.empty((0, _WORDS), np.uint64))


@dataclass(frozen=True, slots=True)
class _Snapshot:
    base: Base
    delta_keys: Int64Array  # append-only buffers; only [:delta_len] belongs to this snapshot
    delta_codes: U64Array
    delta_died: Int64Array
    delta_len: int
    epoch: int
    live: int


@dataclass(frozen=True, slots=True)
class _Op:
    """One write, kept until a base that includes it is installed (see `_journal`)."""

    tag: int | None
    keys: Int64Array
    words: U64Array | None  # None: a delete


_EMPTY_DELTA: Final = (
    np.empty(0, np.int64),
    np.empty((0, _WORDS), np.uint64),
    np.empty(0, np.int64),
)


# --------------------------------------------------------------------------- the index


class PDQIndex:
    """Exact Hamming range search over PDQ codes, kept in step with inserts and deletes.

    Keys are int64 (signal row ids). One writer at a time; any number of concurrent readers.

    With `path`, the base lives in that file (mapped read-only, shared by every process that
    opens it) and compaction rewrites it atomically. Writes may carry a `tag` (the log
    position they come from); a base records the tag it reflects, so another process can adopt
    it with `refresh_base()` and replay only its own writes past that tag.
    """

    def __init__(
        self,
        *,
        delta_fraction: float = 1 / 32,
        min_delta: int = 4096,
        max_candidate_share: float = 0.2,
        path: str | Path | None = None,
        background_compaction: bool = False,
        layout: str = MULTI_INDEX,
    ) -> None:
        """`delta_fraction`/`min_delta`: compact once delta + tombstones exceed
        max(min_delta, delta_fraction * base size). `max_candidate_share`: scan instead of
        probing when the probes would verify more than this share of the base.
        `path`: the base file (opened if it exists). `background_compaction`: automatic
        compaction runs on a thread instead of in the writer that crossed the limit.
        `layout`: the kind of base compaction builds, "multi-index" or "compact" (a base of
        the other kind already in `path` is used until then; `open_shared` rebuilds it)."""
        if layout not in KINDS:
            raise ValueError(f"unknown PDQ index layout {layout!r}: one of {', '.join(KINDS)}")
        self._layout = layout
        self._delta_fraction = delta_fraction
        self._min_delta = min_delta
        self._max_share = max_candidate_share
        self._path = str(path) if path is not None else None
        self._background = background_compaction
        self._lock = threading.Lock()  # one writer at a time; held only briefly
        self._compact_lock = threading.Lock()  # one compaction (or base swap) at a time
        self._compactor: threading.Thread | None = None
        self._delta_slot: dict[int, int] = {}  # key -> slot, live delta entries only
        self._base_dead = 0
        # Every write since the installed base was snapshotted: replayed on top of a new base.
        self._journal: list[_Op] = []
        self._last_tag = -1
        # A base older than this cannot take our journal: a start-up load's differences were
        # computed against the base in use then, so they hold nothing about the changes between
        # an older base's tag and the load's (`_adopt_newer`).
        self._oldest_adoptable_tag = -1
        base = _EMPTY_BASE
        if self._path is not None and os.path.exists(self._path):
            base = Base.open(self._path)
            self._last_tag = base.tag
        self._snap = _Snapshot(base, *_EMPTY_DELTA, 0, 0, base.size)

    # ----------------------------------------------------------------- bulk build

    @classmethod
    def from_arrays(
        cls,
        keys: np.ndarray,
        codes: np.ndarray,
        *,
        path: str | Path | None = None,
        tag: int = -1,
        **options: Any,
    ) -> PDQIndex:
        """Build from (n,) int keys and (n, 32) uint8 codes; a repeated key keeps its last code.

        With `path` the base is written to that file (atomically) and mapped read-only."""
        words = _check_codes(codes)
        key_arr, words = _last_of_each_key(_check_keys(keys, words.shape[0]), words)
        index = cls(**options)
        index._path = str(path) if path is not None else None
        base = Base.build(key_arr, words, tag=tag, path=path, kind=index._layout)
        index._last_tag = tag
        index._snap = _Snapshot(base, *_EMPTY_DELTA, 0, 0, base.size)
        return index

    @classmethod
    def open_shared(
        cls,
        path: str | Path,
        keys: np.ndarray,
        codes: np.ndarray,
        *,
        tag: int = -1,
        **options: Any,
    ) -> PDQIndex:
        """The index of exactly `keys`/`codes` (the state at log position `tag`), on the base
        file at `path` that the other workers of this host share: `shared_loader` fed once."""
        load = cls.shared_loader(path, tag=tag, **options)
        load.feed(keys, codes)
        return load.finish()

    @staticmethod
    def shared_loader(path: str | Path, *, tag: int, **options: Any) -> SharedLoad:
        """A load of the state at log position `tag` onto the host's base file at `path`, fed
        a batch of keys and codes at a time (`SharedLoad`); `options` as for `PDQIndex`."""
        return SharedLoad(path, tag=tag, options=options)

    # ----------------------------------------------------------------- reads

    def __len__(self) -> int:
        return self._snap.live

    def __contains__(self, key: object) -> bool:
        try:
            k = _check_key(key)
        except InvalidPDQInput:
            return False
        # The writer inserts into the delta before it buries the base entry, so a key being
        # replaced is never momentarily missing.
        if k in self._delta_slot:
            return True
        return bool(self._snap.base.find(np.array([k], np.int64))[0] >= 0)

    def query(self, code: bytes | str, threshold: int = DEFAULT_THRESHOLD) -> list[tuple[int, int]]:
        """Every (key, distance) within `threshold` bits of `code`, by distance then key."""
        t = _check_threshold(threshold)
        q = np.frombuffer(_code_bytes(code), dtype=np.uint64).reshape(1, _WORDS)
        return self._search(q, t)[0]

    def query_many(
        self, codes: np.ndarray, threshold: int = DEFAULT_THRESHOLD
    ) -> list[list[tuple[int, int]]]:
        """`query` for each row of a (b, 32) uint8 array, sharing the work across the batch."""
        t = _check_threshold(threshold)
        return self._search(_check_codes(codes), t)

    def memory_bytes(self) -> int:
        """Approximate bytes held: arrays (exact) plus the delta's key map (estimated)."""
        report = self.memory_report()
        return report["shared"] + report["private"]

    def memory_report(self) -> dict[str, int]:
        """`shared`: the base arrays (one copy per host when they are in a file);
        `private`: what this process alone holds (delta, tombstones, journal)."""
        s = self._snap
        private = s.delta_keys.nbytes + s.delta_codes.nbytes + s.delta_died.nbytes
        private += sys.getsizeof(self._delta_slot) + 64 * len(self._delta_slot)
        private += s.base.private_bytes()
        private += sum(
            op.keys.nbytes + (op.words.nbytes if op.words is not None else 0) + 64
            for op in list(self._journal)
        )
        return {"shared": s.base.shared_bytes(), "private": private}

    @property
    def base_tag(self) -> int:
        """The log position the current base reflects (-1: unknown)."""
        return self._snap.base.tag

    @property
    def base_path(self) -> str | None:
        return self._snap.base.path

    @property
    def layout(self) -> str:
        """The kind of the base in use: "multi-index" or "compact"."""
        return self._snap.base.kind

    # ----------------------------------------------------------------- writes

    def add(self, key: int, code: bytes | str, *, tag: int | None = None) -> None:
        """Insert or replace one code."""
        k = _check_key(key)
        words = np.frombuffer(_code_bytes(code), dtype=np.uint64).reshape(1, _WORDS)
        with self._lock:
            self._upsert(np.array([k], np.int64), words.copy(), tag)
            due = self._compaction_due()
        if due:
            self._auto_compact()

    def add_many(
        self, keys: Sequence[int] | np.ndarray, codes: np.ndarray, *, tag: int | None = None
    ) -> None:
        """Insert or replace many codes; within the batch a repeated key keeps its last code."""
        words = _check_codes(codes)
        key_arr = _check_keys(keys, words.shape[0])
        key_arr, words = _last_of_each_key(key_arr, words)
        if key_arr.size == 0:
            return
        with self._lock:
            self._upsert(key_arr, np.array(words, copy=True), tag)
            due = self._compaction_due()
        if due:
            self._auto_compact()

    def remove(self, key: int, *, tag: int | None = None) -> bool:
        """Delete a key; False if it was not there."""
        try:
            k = _check_key(key)
        except InvalidPDQInput:
            return False
        with self._lock:
            found = self._remove(k, tag)
            due = self._compaction_due()
        if due:
            self._auto_compact()
        return found

    def note_tag(self, tag: int) -> None:
        """The caller has applied every write up to log position `tag` (a new base says so)."""
        with self._lock:
            self._last_tag = max(self._last_tag, tag)

    def compact(self) -> None:
        """Fold the delta and tombstones into a new base (a new file when file-backed).

        Neither readers nor writers wait for the build: the writer lock is held only to take
        the snapshot and, at the end, to swap in the new base once the writes made meanwhile
        are replayed onto it (most of them before the lock is taken).
        """
        old: Base | None = None  # the base replaced, once it is
        with self._compact_lock, _file_lock(self._path, wait=True):
            if self._path is not None and self._adopt_newer():
                return  # another process just wrote a base; ours would be no newer
            with self._lock:
                s = self._snap
                if (
                    s.delta_len == 0
                    and self._base_dead == 0
                    and (self._path is None or s.base.path == self._path)
                    and s.base.kind == self._layout
                ):
                    return
                mark = len(self._journal)
                tag = self._last_tag
            # The delta entries alive in the snapshot, read as a reader would, outside the lock:
            # walking `_delta_slot` here held the lock and the GIL for 0.2 s at 100M codes
            # (3.1M entries), stalling the process's writes and queries.
            slots = np.flatnonzero(s.delta_died[: s.delta_len] > s.epoch)
            alive = s.base.live_mask()  # may include deaths after `mark`: they replay as no-ops
            keys = np.concatenate([s.base.key_at(np.flatnonzero(alive)), s.delta_keys[slots]])
            codes = np.concatenate([s.base.codes_at(alive), s.delta_codes[slots]])
            del alive
            base = Base.build(keys, codes, tag=tag, path=self._path, kind=self._layout)
            del keys, codes
            # The new file is mapped afresh: fault it in here, not in the first queries after
            # the swap (at 100M codes, multi-index, those took 0.27-0.66 s each doing it).
            base.populate()
            # The writes made during the build are redone onto the new base before the lock is
            # taken (nobody sees it yet); under the lock, only those made meanwhile. Redoing them
            # all under the lock kept writers waiting ~0.1 s at 10M codes (1,500 writes).
            done = len(self._journal)
            stage = self._staged(base, self._journal[mark:done])
            with self._lock:
                stage._redo(self._journal[done:])
                replaced = self._take(stage)
            del replaced  # the old delta, key map and journal, freed with the lock free
            old = s.base
            del s, stage, base
        if old is not None:
            _wait_for_queries(old)

    def refresh_base(self) -> bool:
        """Adopt a newer base file another process wrote at `path`; True if one was adopted.

        Our own writes tagged after the new base's tag are replayed onto it; a base older than
        the one in use, or than the log position a start-up load onto a shared file reflected,
        is ignored. Cheap when nothing changed (one stat)."""
        if self._path is None:
            return False
        fid = file_id(self._path)
        if fid is None or fid == self._snap.base.file_id:
            return False
        with self._compact_lock:
            return self._adopt_newer()

    def _adopt_newer(self) -> bool:
        """`_compact_lock` held: adopt the file at `path` if it is another, newer base."""
        assert self._path is not None
        if file_id(self._path) in (None, self._snap.base.file_id):
            return False
        try:
            base = Base.open(self._path)
        except BaseFileError:
            return False  # replaced again while we opened it: the next call picks it up
        if base.tag < max(self._snap.base.tag, self._oldest_adoptable_tag):
            return False

        tag = base.tag
        # As in `compact`: this worker's first queries on the base would fault it in.
        base.populate()

        def later(ops: list[_Op]) -> list[_Op]:
            return [op for op in ops if op.tag is None or op.tag > tag]

        # As in `compact`: our writes the new base lacks are redone onto it before the writer
        # lock is taken (nobody sees it yet); under the lock, only those made meanwhile.
        # Redoing them all under the lock kept this worker's writers waiting while it adopted
        # a base another worker compacted (the writes made during that compaction).
        # `_journal` is only replaced under `_compact_lock`, which we hold.
        with self._lock:
            done = len(self._journal)
        stage = self._staged(base, later(self._journal[:done]))
        with self._lock:
            stage._redo(later(self._journal[done:]))
            replaced = self._take(stage)
        # What `_take` replaced goes with the lock free: dropping the old snapshot under it
        # freed the old delta and key map and, the last reference to the old base being that
        # snapshot's, unmapped it and freed the replaced file's pages with writers waiting.
        old = replaced[0].base
        del replaced, stage, base
        _wait_for_queries(old)
        return True

    # ----------------------------------------------------------------- writer internals

    def _publish(
        self,
        delta_keys: Int64Array,
        delta_codes: U64Array,
        delta_died: Int64Array,
        delta_len: int,
        epoch: int,
        live: int,
    ) -> None:
        self._snap = _Snapshot(
            self._snap.base, delta_keys, delta_codes, delta_died, delta_len, epoch, live
        )

    def _note(self, op: _Op) -> None:
        self._journal.append(op)
        if op.tag is not None:
            self._last_tag = max(self._last_tag, op.tag)

    def _upsert(self, keys: Int64Array, words: U64Array, tag: int | None) -> None:
        self._note(_Op(tag, keys, words))
        s = self._snap
        epoch = s.epoch + 1
        m = keys.shape[0]
        start, end = s.delta_len, s.delta_len + m
        dkeys, dcodes, ddied = s.delta_keys, s.delta_codes, s.delta_died
        if end > dkeys.shape[0]:  # grow; snapshots keep the old buffers, whose prefix is final
            cap = max(end, 2 * dkeys.shape[0], 1024)
            dkeys = np.concatenate([dkeys[:start], np.empty(cap - start, np.int64)])
            dcodes = np.concatenate([dcodes[:start], np.empty((cap - start, _WORDS), np.uint64)])
            ddied = np.concatenate([ddied[:start], np.empty(cap - start, np.int64)])
        dkeys[start:end] = keys
        dcodes[start:end] = words
        ddied[start:end] = _NEVER
        replaced = 0
        slots = self._delta_slot
        for slot, k in enumerate(keys.tolist(), start):
            old = slots.get(k)
            if old is not None:
                ddied[old] = epoch
                replaced += 1
            slots[k] = slot
        base_pos = s.base.find(keys)
        base_pos = base_pos[base_pos >= 0]
        if base_pos.size:
            s.base.kill(base_pos, epoch)
        self._base_dead += int(base_pos.size)
        replaced += int(base_pos.size)
        self._publish(dkeys, dcodes, ddied, end, epoch, s.live + m - replaced)

    def _remove(self, k: int, tag: int | None) -> bool:
        s = self._snap
        epoch = s.epoch + 1
        slot = self._delta_slot.pop(k, None)
        if slot is not None:
            s.delta_died[slot] = epoch
        else:
            pos = s.base.find(np.array([k], np.int64))
            if int(pos[0]) < 0:
                return False
            s.base.kill(pos, epoch)
            self._base_dead += 1
        self._note(_Op(tag, np.array([k], np.int64), None))  # only deletes that did something
        self._publish(s.delta_keys, s.delta_codes, s.delta_died, s.delta_len, epoch, s.live - 1)
        return True

    def _staged(self, base: Base, replay: list[_Op]) -> PDQIndex:
        """A private index on `base` with `replay` redone onto it: what `_take` makes current.
        No reader or writer sees it (nor `base`'s tombstones) until then, so the writer lock
        is not needed to build it."""
        stage = PDQIndex(layout=self._layout)
        stage._snap = _Snapshot(base, *_EMPTY_DELTA, 0, self._snap.epoch + 1, base.size)
        stage._redo(replay)
        return stage

    def _redo(self, ops: list[_Op]) -> None:
        for op in ops:
            if op.words is None:
                self._remove(int(op.keys[0]), op.tag)
            else:
                self._upsert(op.keys, op.words, op.tag)

    def _take(self, stage: PDQIndex) -> tuple[_Snapshot, dict[int, int], list[_Op]]:
        """Writer lock held: make `stage`'s base, delta and journal ours, in one step for
        readers (a reader sees the old base with every write, or the new one with every
        write). Returns what it replaced, for the caller to drop once the lock is released:
        freeing it is not quick (the delta and its key map: 3.1M entries at 100M codes; the
        old base's mapping, when this held its last reference)."""
        replaced = (self._snap, self._delta_slot, self._journal)
        self._snap = stage._snap
        self._delta_slot = stage._delta_slot
        self._base_dead = stage._base_dead
        self._journal = stage._journal
        self._last_tag = max(self._last_tag, stage._snap.base.tag)
        return replaced

    def _compaction_due(self) -> bool:
        s = self._snap
        limit = max(self._min_delta, int(self._delta_fraction * s.base.size))
        return s.delta_len + self._base_dead > limit

    def _auto_compact(self) -> None:
        if self._path is not None and _file_locked_elsewhere(self._path):
            return  # another process is writing a new base; we adopt it when it lands
        if not self._background:
            if self._compact_lock.locked():
                return  # another thread is compacting; it replays our write
            self.compact()
            return
        with self._lock:
            if self._compactor is not None and self._compactor.is_alive():
                return
            self._compactor = threading.Thread(target=self.compact, name="pdq-compact", daemon=True)
            self._compactor.start()

    def wait_for_compaction(self, timeout: float | None = None) -> None:
        """Block until a background compaction (if any) has finished (tests, shutdown)."""
        t = self._compactor
        if t is not None:
            t.join(timeout)

    # ----------------------------------------------------------------- search

    def _search(self, queries: U64Array, threshold: int) -> list[list[tuple[int, int]]]:
        s = self._snap  # one snapshot for the whole call
        b = queries.shape[0]
        qid_parts: list[Int64Array] = []
        key_parts: list[Int64Array] = []
        dist_parts: list[Int64Array] = []
        if s.base.size:
            for qid, pos, dist in self._search_base(s.base, queries, threshold):
                alive = s.base.alive(pos, s.epoch)
                qid_parts.append(qid[alive])
                key_parts.append(s.base.key_at(pos[alive]))
                dist_parts.append(dist[alive])
        if s.delta_len:
            dcodes = s.delta_codes[: s.delta_len]
            for i in range(b):
                pos, dist = _scan(dcodes, queries[i], threshold)
                alive = s.delta_died[pos] > s.epoch
                qid_parts.append(np.full(int(alive.sum()), i, np.int64))
                key_parts.append(s.delta_keys[pos[alive]])
                dist_parts.append(dist[alive])
        results: list[list[tuple[int, int]]] = [[] for _ in range(b)]
        if not qid_parts:
            return results
        qid = np.concatenate(qid_parts)
        keys = np.concatenate(key_parts)
        dist = np.concatenate(dist_parts)
        order = np.lexsort((keys, dist, qid))
        qid, keys, dist = qid[order], keys[order], dist[order]
        bounds = np.searchsorted(qid, np.arange(b + 1)).tolist()
        pairs = list(zip(keys.tolist(), dist.tolist(), strict=True))
        for i in range(b):
            if bounds[i] != bounds[i + 1]:
                results[i] = pairs[bounds[i] : bounds[i + 1]]
        return results

    def _search_base(
        self, base: Base, queries: U64Array, threshold: int
    ) -> list[tuple[Int64Array, Int64Array, Int64Array]]:
        """(query row, base position, distance) triples of every match in the base, deduped."""
        if base.head is not None:  # a compact base: no chunk tables, one scan for the batch
            assert base.tail is not None
            return [_range_scan(base.head, base.tail, queries, threshold)]
        offsets = base.offsets
        assert offsets is not None
        n = base.size
        b = queries.shape[0]
        plan = _plan(threshold, self._max_share)
        out: list[tuple[Int64Array, Int64Array, Int64Array]] = []
        to_scan: list[int]
        if plan.chunk is None:
            to_scan = list(range(b))
        else:
            assert plan.mask is not None and plan.offset_base is not None
            halves = queries.view(np.uint16).astype(np.int64)  # (b, 16) chunk values
            slot = plan.offset_base + (halves[:, plan.chunk] ^ plan.mask)  # (b, probes)
            starts = offsets[slot]
            lengths = offsets[slot + 1] - starts
            per_query = lengths.sum(axis=1)
            scan_mask = per_query > self._max_share * n
            to_scan = np.flatnonzero(scan_mask).tolist()
            probe_rows = np.flatnonzero(~scan_mask)
            # Group queries into rounds of bounded size so a big batch stays in memory.
            round_start = 0
            cum = np.cumsum(per_query[probe_rows])
            while round_start < probe_rows.size:
                before = cum[round_start - 1] if round_start else 0
                round_end = int(np.searchsorted(cum, before + _CANDIDATE_BUDGET, side="right"))
                round_end = max(round_end, round_start + 1)
                rows = probe_rows[round_start:round_end]
                out.append(
                    self._verify(base, queries, rows, starts[rows], lengths[rows], threshold)
                )
                round_start = round_end
        assert base.codes is not None
        for i in to_scan:
            pos, dist = _scan(base.codes, queries[i], threshold)
            out.append((np.full(pos.size, i, np.int64), pos, dist))
        return out

    @staticmethod
    def _verify(
        base: Base,
        queries: U64Array,
        rows: NDArray[np.intp],
        starts: Int64Array,
        lengths: Int64Array,
        threshold: int,
    ) -> tuple[Int64Array, Int64Array, Int64Array]:
        flat_len = lengths.reshape(-1)
        total = int(flat_len.sum())
        if total == 0:
            empty = np.empty(0, np.int64)
            return empty, empty, empty
        # Concatenate the bucket slices: index i of run j is starts[j] + (i - run_begin[j]).
        run_end = np.cumsum(flat_len)
        shift = starts.reshape(-1) - (run_end - flat_len)
        posting_idx = np.arange(total, dtype=np.int64) + np.repeat(shift, flat_len)
        assert base.postings is not None and base.codes is not None
        candidates = base.postings[posting_idx]
        per_row = lengths.sum(axis=1)
        owner = np.repeat(rows, per_row)
        gathered = base.codes.take(candidates, axis=0)
        xored = np.bitwise_xor(gathered, queries.take(owner, axis=0), out=gathered)
        hit, dist = _within(xored, threshold)
        if hit.size == 0:
            empty = np.empty(0, np.int64)
            return empty, empty, empty
        # A code can surface through several chunks: keep one (query, position) of each.
        qid = owner[hit].astype(np.int64)
        pos = candidates[hit].astype(np.int64)
        _, first = np.unique(qid * base.size + pos, return_index=True)
        return qid[first], pos[first], dist[first]


# --------------------------------------------------------------------------- a start-up load

# What a load knows of each entry of the base it is compared with (one byte per entry).
_NOT_FED: Final = 0  # no batch so far had its key: stale, unless a later batch has it
_SAME: Final = 1  # the last batch with its key had the base's code
_CHANGED: Final = 2  # the last batch with its key had another code (kept among the changes)


class SharedLoad:
    """A start-up load onto the host's shared base file, fed a batch of keys and codes at a
    time: `PDQIndex.shared_loader(path, tag=...)`, `feed` for each batch, then `finish`.

    Each batch is compared with the mapped base as it arrives, then dropped. The load keeps one
    byte per base entry (fed with the base's code, with another, or not yet) and the keys and
    codes that the base lacks or holds with another code; nothing else. `finish` decides as
    `open_shared` always has: a base close enough to what was fed (changes plus stale entries
    at most max(min_delta, delta_fraction * its size)) is kept, with the differences applied as
    private writes; otherwise (far behind, no file, the other layout) a new base is written for
    everyone from the base's entries fed with their own code, read back from the mapping by
    position, plus the changes. So a worker whose host file is current never holds a copy of
    the codes; one that must build gathers them all, as the build needs.

    A repeated key keeps its last code, across batches too.

    The file lock (one base builder per host) is taken to open the base, so a builder's file is
    only seen complete, and again in `finish`; not while the batches stream in, so workers
    starting together read their databases side by side. If another process wrote a base in
    between (a worker that started beside this one, a compaction), `finish` compares everything
    fed with that base instead of writing a second one.
    """

    def __init__(self, path: str | Path, *, tag: int, options: dict[str, Any]) -> None:
        self._path = str(path)
        self._tag = tag
        self._options = options
        self._finished = False
        with _file_lock(self._path, wait=True):
            self._open()

    def _open(self) -> None:
        """File lock held: map the base now at `path` (if any); the comparison starts anew."""
        index = PDQIndex(path=self._path, **self._options)
        self._index: PDQIndex | None = index
        self._base = index._snap.base
        self._fed = np.zeros(self._base.size, np.uint8)  # _NOT_FED, _SAME or _CHANGED
        # What was fed that the base lacks or holds with another code, in the order fed.
        self._changed_keys = bytearray()  # int64 each
        self._changed_codes = bytearray()  # 32 bytes each
        self._largest_key = -(1 << 63) - 1  # below every key: none fed yet
        self._keys_may_repeat = False  # some key may have come in two batches

    def feed(self, keys: Sequence[int] | np.ndarray, codes: np.ndarray) -> None:
        """The next batch: (n,) int keys and (n, 32) uint8 codes. The load keeps no reference
        to either."""
        if self._finished:
            raise RuntimeError("this load is finished")
        words = _check_codes(codes)
        key_arr, words = _last_of_each_key(_check_keys(keys, words.shape[0]), words)
        if key_arr.size:
            # Batches in key order (a load in row-id order) cannot repeat a key: `finish` then
            # skips looking for repeats among the changes.
            if int(key_arr.min()) <= self._largest_key:
                self._keys_may_repeat = True
            self._largest_key = max(self._largest_key, int(key_arr.max()))
        self._compare(key_arr, words)

    def _compare(self, keys: Int64Array, words: U64Array) -> None:
        """Note which base entries the (unique) `keys` hold, and keep what differs.

        A chunk of keys at a time (`open_shared` feeds everything at once): at once, the
        lookups' and comparisons' temporaries were several times the codes' own size."""
        base = self._base
        for start in range(0, keys.shape[0], _COMPARE_CHUNK):
            chunk_keys = keys[start : start + _COMPARE_CHUNK]
            chunk_words = words[start : start + _COMPARE_CHUNK]
            pos = base.find(chunk_keys)
            present = np.flatnonzero(pos >= 0)
            same = np.zeros(pos.shape[0], bool)
            same[present] = (base.codes_at(pos[present]) == chunk_words[present]).all(axis=1)
            self._fed[pos[present]] = np.where(same[present], _SAME, _CHANGED)
            differ = np.flatnonzero(~same)
            # `.data` (the array's bytes): with the array itself, `+=` would be numpy's add.
            self._changed_keys += chunk_keys[differ].data
            self._changed_codes += chunk_words[differ].data

    def finish(self) -> PDQIndex:
        """The index of exactly what was fed, on the host's base file (see the class)."""
        if self._finished:
            raise RuntimeError("this load is finished")
        self._finished = True
        try:
            with _file_lock(self._path, wait=True):
                if file_id(self._path) != self._base.file_id:
                    # Another process wrote a base while the batches streamed in (a worker that
                    # started beside this one, or a compaction): compare everything fed with
                    # it rather than write a second one, a chunk at a time as before.
                    unchanged, changes = self._unchanged_fed(), self._changes()
                    self._open()
                    for keys, words in unchanged:
                        self._compare(keys, words)
                    self._compare(*changes)
                    del unchanged, changes
                return self._finish_locked()
        finally:
            self._let_go()

    def _finish_locked(self) -> PDQIndex:
        index, base = self._index, self._base
        assert index is not None
        keys, words = self._changes()
        stale = np.flatnonzero(self._fed == _NOT_FED)
        limit = max(index._min_delta, int(index._delta_fraction * base.size))
        # No file yet, or one of the other layout: write one for everyone (even empty).
        if keys.size + stale.size > limit or base.path is None or base.kind != index._layout:
            keys, words = self._contents(keys, words)
            del stale, index, base
            self._let_go()  # before the build: `keys`/`words` hold all it needs
            return PDQIndex.from_arrays(
                keys, words.view(np.uint8), path=self._path, tag=self._tag, **self._options
            )
        for k in base.key_at(stale).tolist():
            index.remove(k, tag=self._tag)
        if keys.size:
            index.add_many(keys, words.view(np.uint8), tag=self._tag)
        index.note_tag(self._tag)
        index._oldest_adoptable_tag = self._tag
        return index

    def _let_go(self) -> None:
        """Drop the base compared with (its mapping: a base about to be replaced is no one's
        any more) and what was gathered."""
        self._index = None
        self._base = _EMPTY_BASE
        self._fed = np.zeros(0, np.uint8)
        self._changed_keys, self._changed_codes = bytearray(), bytearray()

    def _changes(self) -> tuple[Int64Array, U64Array]:
        """The changes fed, one per key (its last code), without the keys whose last batch
        had the base's own code after all."""
        keys: Int64Array = np.frombuffer(self._changed_keys, np.int64)
        words: U64Array = np.frombuffer(self._changed_codes, np.uint64).reshape(-1, _WORDS)
        if not self._keys_may_repeat:
            return keys, words
        keys, words = _last_of_each_key(keys, words)
        pos = self._base.find(keys)
        in_base = np.flatnonzero(pos >= 0)
        keep = np.ones(keys.shape[0], bool)
        keep[in_base] = self._fed[pos[in_base]] == _CHANGED
        return keys[keep], words[keep]

    def _unchanged_fed(self) -> Iterator[tuple[Int64Array, U64Array]]:
        """The base's entries fed with their own code, in key order, a chunk at a time (read
        back from the base's mapping, which the iterator keeps)."""
        base, same = self._base, self._fed == _SAME

        def chunks() -> Iterator[tuple[Int64Array, U64Array]]:
            for start in range(0, base.size, _COMPARE_CHUNK):
                pos = np.flatnonzero(same[start : start + _COMPARE_CHUNK]) + start
                yield base.key_at(pos), base.codes_at(pos)

        return chunks()

    def _contents(self, keys: Int64Array, words: U64Array) -> tuple[Int64Array, U64Array]:
        """Everything fed (the changes being `keys`/`words`), in two arrays for a build."""
        kept = int(np.count_nonzero(self._fed == _SAME))
        if kept == 0:
            return keys, words  # no copy: a first load (no file) is all changes
        total = kept + keys.shape[0]
        all_keys = np.empty(total, np.int64)
        all_words = np.empty((total, _WORDS), np.uint64)
        # The base's entries come in key order, and so do the changes of a load in row-id
        # order: then the two runs are merged (each entry after the changes of smaller keys,
        # the changes in the slots left), so the build finds its keys sorted instead of
        # sorting them (16 B a code). Otherwise the changes go last and the build sorts.
        merge = keys.size < 2 or bool(np.all(keys[1:] > keys[:-1]))
        taken = np.zeros(total, bool)
        done = 0
        for part_keys, part_words in self._unchanged_fed():
            slots = np.arange(done, done + part_keys.size)
            if merge:
                slots += np.searchsorted(keys, part_keys)
            all_keys[slots] = part_keys
            all_words[slots] = part_words
            taken[slots] = True
            done += part_keys.size
        left = np.flatnonzero(~taken)
        all_keys[left] = keys
        all_words[left] = words
        return all_keys, all_words


def _wait_for_queries(old: Base) -> None:
    """Let the queries still on a replaced file-backed base finish, so that its last reference
    is the caller's and it is dropped on the caller's thread (a compaction's or base
    adoption's, with no lock held): dropping the last mapping of a replaced (unlinked) base
    file frees its pages, ~0.17 s a GiB on the bench machine, and the query that dropped it
    paid that (0.8 s at 100M codes, compact layout). Waits at most `_RELEASE_WAIT`."""
    if old.path is None:
        return
    deadline = time.monotonic() + _RELEASE_WAIT
    # Three references: the caller's, this call's `old`, and getrefcount's argument.
    while sys.getrefcount(old) > 3 and time.monotonic() < deadline:
        time.sleep(0.005)


# --------------------------------------------------------------------------- base file lock


@contextlib.contextmanager
def _file_lock(path: str | None, *, wait: bool) -> Iterator[bool]:
    """An exclusive flock on `path`.lock (one base builder per host); no-op without a path.
    Yields whether the lock is held (always True when waiting)."""
    if path is None:
        yield True
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _file_locked_elsewhere(path: str) -> bool:
    with _file_lock(path, wait=False) as got:
        return not got
