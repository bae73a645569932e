"""The immutable base of a PDQ index: in memory, or in a file every worker maps read-only.

Two kinds of base, both exact (docs/scaling.md, "PDQ index layouts"):

- "multi-index" (the default): codes sorted by key; keys narrowed to uint32 offsets from the
  smallest key when the keys span less than 2**32 (row ids always do), else int64; per 16-bit
  chunk a CSR table (uint32 positions sorted by chunk value, 65,537 int64 bounds per chunk).
  Per code that is 32 bytes of code + 4 of key + 64 of positions: 3.1x the raw codes. The
  positions are the floor of multi-index hashing with 16 chunks; no narrower position table
  keeps the search exact.
- "compact": the same keys and codes without the chunk tables, 36 bytes per code (1.125x).
  Each code is stored as two halves in two arrays, `head` (its first 16 bytes) and `tail`.
  Every query scans all the heads (in C, `pdq_index._range_scan`): a code within t bits has
  a head within t bits, and for unrelated codes a 128-bit head is almost never that close, so
  only the few survivors' tails are read. Half the bytes of a full scan; exact all the same.
  Slower than the chunk tables (2.6x at 100M codes on one core), for a third of the memory.

What the file changes is that a host holds ONE copy, shared by all its workers through the
page cache, instead of one private copy per worker.

File format (`*.pdqbase`): a 4 KiB header (JSON, space-padded: magic, version, n, tag, key base,
array offsets and dtypes), then the arrays, each 4 KiB aligned. A file is written under a
temporary name, fsynced and renamed over the old one (`os.replace`, atomic on POSIX), so a
reader maps either the old or the new file, never half of one; a mapping of the old file stays
valid after the rename (the inode lives while it is mapped).

Tombstones are private to each process (each worker follows the log itself): a bitmap with one
bit per base position plus a dict position -> death epoch for the flagged few. The writer sets
the dict entry before the bit, so a reader that sees a bit always finds its epoch.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

CHUNKS: Final = 16
CHUNK_VALUES: Final = 1 << 16
OFFSETS_PER_CHUNK: Final = CHUNK_VALUES + 1
WORDS: Final = 4

MULTI_INDEX: Final = "multi-index"
COMPACT: Final = "compact"
KINDS: Final = (MULTI_INDEX, COMPACT)

MAGIC: Final = "signet-pdq-base"
VERSION: Final = 1
_HEADER: Final = 4096
_ALIGN: Final = 4096
_COPY_ROWS: Final = 1 << 20  # rows per step when permuting codes into the file (32 MiB)
_PAGE: Final = mmap.PAGESIZE
# Bytes of a mapping populated per madvise call (`populate`): each call is one GIL-free stretch
# of kernel work, and between two the thread can stop.
_POPULATE_SLICE: Final = 64 << 20
# madvise(2) advice: fault a range in "as if reading it" (Linux >= 5.14). Python 3.11's `mmap`
# module has no constant for it; it is called through ctypes, which releases the GIL.
_MADV_POPULATE_READ: Final = 22

Int64Array = NDArray[np.int64]
U64Array = NDArray[np.uint64]


class BaseFileError(ValueError):
    """A base file is missing, truncated or not a Signet PDQ base."""


def _align(x: int) -> int:
    return -(-x // _ALIGN) * _ALIGN


_ARRAYS: Final = {
    MULTI_INDEX: ("keys", "codes", "postings", "offsets"),
    COMPACT: ("keys", "head", "tail"),
}


def _layout(
    n: int, key_dtype: np.dtype[np.generic], kind: str
) -> dict[str, tuple[int, str, list[int]]]:
    """name -> (byte offset, dtype, shape) for the arrays of a base of n codes."""
    every: dict[str, tuple[np.dtype[np.generic], list[int]]] = {
        "keys": (key_dtype, [n]),
        "codes": (np.dtype(np.uint64), [n, WORDS]),
        "postings": (np.dtype(np.uint32), [CHUNKS * n]),
        "offsets": (np.dtype(np.int64), [CHUNKS * OFFSETS_PER_CHUNK]),
        "head": (np.dtype(np.uint64), [n, WORDS // 2]),
        "tail": (np.dtype(np.uint64), [n, WORDS // 2]),
    }
    shapes = [(name, *every[name]) for name in _ARRAYS[kind]]
    out: dict[str, tuple[int, str, list[int]]] = {}
    pos = _HEADER
    for name, dtype, shape in shapes:
        out[name] = (pos, dtype.str, shape)
        pos = _align(pos + dtype.itemsize * int(np.prod(shape)))
    return out


def _file_size(layout: dict[str, tuple[int, str, list[int]]]) -> int:
    return max(
        _align(off + np.dtype(dt).itemsize * int(np.prod(shape)))
        for off, dt, shape in layout.values()
    )


def _views(mm: np.memmap, layout: dict[str, tuple[int, str, list[int]]]) -> dict[str, np.ndarray]:
    out = {}
    for name, (off, dt, shape) in layout.items():
        dtype = np.dtype(dt)
        nbytes = dtype.itemsize * int(np.prod(shape))
        out[name] = mm[off : off + nbytes].view(dtype).reshape(shape)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Base:
    key_base: int  # keys[i] + key_base is the real key (0 when keys are int64)
    keys: np.ndarray  # (n,) ascending, unique; uint32 or int64
    # Multi-index bases (None in a compact base):
    codes: U64Array | None  # (n, 4)
    postings: NDArray[np.uint32] | None  # (16 n,) positions, chunk-major, sorted by chunk value
    offsets: Int64Array | None  # (16 * 65537,) bucket bounds into `postings`
    tag: int  # the log position this base reflects (-1: none given)
    path: str | None = None  # the mapped file, if any
    file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of that file
    # Private to this process, mutated by the single writer:
    dead: NDArray[np.uint8] = field(default_factory=lambda: np.zeros(0, np.uint8))
    died: dict[int, int] = field(default_factory=dict)  # position -> death epoch
    # Compact bases (None in a multi-index base): each code's first and last 16 bytes.
    head: U64Array | None = None  # (n, 2)
    tail: U64Array | None = None  # (n, 2)

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])

    def shared_bytes(self) -> int:
        """Bytes of the arrays every worker can share (the file, when there is one)."""
        arrays = (self.keys, self.codes, self.postings, self.offsets, self.head, self.tail)
        return sum(a.nbytes for a in arrays if a is not None)

    @property
    def kind(self) -> str:
        """ "multi-index" (chunk tables to probe) or "compact" (codes only: queries scan)."""
        return COMPACT if self.head is not None else MULTI_INDEX

    def codes_at(self, pos: np.ndarray) -> U64Array:
        """The (k, 4) codes at positions (or a boolean mask over positions)."""
        if self.codes is not None:
            picked: U64Array = self.codes[pos]
            return picked
        assert self.head is not None and self.tail is not None
        return np.concatenate((self.head[pos], self.tail[pos]), axis=1)

    def private_bytes(self) -> int:
        return int(self.dead.nbytes) + 100 * len(self.died)  # dict entry: estimated

    def populate(self, stop: Any = None) -> str:
        """Fault every page of a file-backed base's arrays into this process's mapping now,
        on the calling thread, so that the queries that first use this base do not: at 100M
        codes the first queries on a freshly mapped base took 0.27-0.66 s each, faulting it in.
        `stop()`, when given, is asked between slices (of `_POPULATE_SLICE` bytes); a true
        answer ends the populating early. Returns how it was done: "madvise", "touch" (the
        kernel lacks MADV_POPULATE_READ), "none" (an in-memory base: its pages are the
        process's already), or "stopped"."""
        if self.path is None:
            return "none"
        arrays = (self.keys, self.codes, self.postings, self.offsets, self.head, self.tail)
        how = "none"
        for a in arrays:
            if a is None or a.nbytes == 0:
                continue
            how = _populate(a, stop)
            if how in ("stopped", "none"):  # "none" here: madvise failed, not unsupported
                break
        return how

    # ----------------------------------------------------------------- keys and liveness

    def key_at(self, pos: np.ndarray) -> Int64Array:
        keys: Int64Array = self.keys[pos].astype(np.int64)
        if self.key_base:
            keys += self.key_base
        return keys

    def _flagged(self, pos: np.ndarray) -> NDArray[np.bool_]:
        p = pos.astype(np.int64, copy=False)
        flagged: NDArray[np.bool_] = ((self.dead[p >> 3] >> (p & 7).astype(np.uint8)) & 1) != 0
        return flagged

    def alive(self, pos: np.ndarray, epoch: int) -> NDArray[np.bool_]:
        """Which positions were alive at `epoch` (dead ones carry the epoch they died at)."""
        flagged = self._flagged(pos)
        ok = ~flagged
        idx = np.flatnonzero(flagged)
        if idx.size:
            died = self.died
            ok[idx] = [died[p] > epoch for p in pos[idx].tolist()]
        return ok

    def kill(self, pos: np.ndarray, epoch: int) -> None:
        """Writer only: mark positions dead as of `epoch` (dict first, then the bit)."""
        p = pos.astype(np.int64, copy=False)
        for q in p.tolist():
            self.died[q] = epoch
        np.bitwise_or.at(self.dead, p >> 3, (1 << (p & 7)).astype(np.uint8))

    def live_mask(self) -> NDArray[np.bool_]:
        """Every position that is not dead now (bits only grow, so a later call keeps fewer)."""
        bits = np.unpackbits(self.dead, bitorder="little")[: self.size]
        live: NDArray[np.bool_] = bits == 0
        return live

    def find(self, keys: Int64Array) -> NDArray[np.intp]:
        """Positions of the live entries among `keys` (-1 where absent or dead)."""
        n = self.size
        if n == 0:
            return np.full(keys.shape, -1, np.intp)
        if self.keys.dtype == np.uint32:
            hi = min(self.key_base + (1 << 32) - 1, (1 << 63) - 1)
            in_range = (keys >= self.key_base) & (keys <= hi)
            rel: np.ndarray = np.where(in_range, keys - np.int64(self.key_base), 0)
            rel = rel.astype(np.uint32)
        else:
            in_range = np.ones(keys.shape, bool)
            rel = keys
        pos = np.searchsorted(self.keys, rel)
        pos[pos >= n] = 0
        ok = in_range & (self.keys[pos] == rel) & ~self._flagged(pos)
        return np.where(ok, pos, -1)

    # ----------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        keys: Int64Array,
        codes: U64Array,
        *,
        tag: int = -1,
        path: str | Path | None = None,
        kind: str = MULTI_INDEX,
    ) -> Base:
        """A base of unique `keys` (any order) and their codes; in a file when `path` is given.
        `kind`: "multi-index" or "compact" (see the module docstring).

        The file is written under a temporary name in the same directory and renamed over
        `path` only when complete and synced.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown PDQ base kind {kind!r}: one of {', '.join(KINDS)}")
        n = int(keys.shape[0])
        if n >= 1 << 32:
            raise ValueError("at most 2**32 - 1 codes per base")
        order: np.ndarray | None = None
        if n > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
        narrow = n == 0 or int(keys[-1]) - int(keys[0]) < (1 << 32)
        key_base = int(keys[0]) if narrow and n else 0
        key_dtype = np.dtype(np.uint32) if narrow else np.dtype(np.int64)
        layout = _layout(n, key_dtype, kind)
        tmp: str | None = None
        mm: np.memmap | None = None
        target: Path | None = None
        if path is None:
            arrays = {
                name: np.empty(shape, np.dtype(dt)) for name, (_off, dt, shape) in layout.items()
            }
        else:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = str(target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"))
            with open(tmp, "wb") as f:
                f.truncate(_file_size(layout))
            mm = np.memmap(tmp, np.uint8, "r+")
            arrays = _views(mm, layout)
        try:
            if narrow:
                np.subtract(keys, np.int64(key_base), out=arrays["keys"], casting="unsafe")
            else:
                arrays["keys"][:] = keys
            for start in range(0, n, _COPY_ROWS):
                stop = min(n, start + _COPY_ROWS)
                rows = codes[start:stop] if order is None else codes[order[start:stop]]
                if kind == MULTI_INDEX:
                    arrays["codes"][start:stop] = rows
                else:
                    arrays["head"][start:stop] = rows[:, : WORDS // 2]
                    arrays["tail"][start:stop] = rows[:, WORDS // 2 :]
            del order
            if kind == MULTI_INDEX:
                _fill_postings(arrays["codes"], arrays["postings"], arrays["offsets"])
            if mm is not None and tmp is not None:
                header = {
                    "magic": MAGIC,
                    "version": VERSION,
                    "n": n,
                    "tag": int(tag),
                    "key_base": key_base,
                    "kind": kind,
                    "layout": layout,
                }
                raw = json.dumps(header).encode()
                if len(raw) >= _HEADER:  # pragma: no cover - fixed-size layout
                    raise BaseFileError("header too large")
                mm[:_HEADER] = np.frombuffer(raw.ljust(_HEADER - 1) + b"\n", np.uint8)
                # No `mm.flush()`: Python's mmap.flush (msync) keeps the GIL for the whole
                # write-back (0.4 s at 10M codes, seconds at 100M), stalling every query and
                # write of the process beside a background compaction. On Linux the pages
                # written through the mapping are the file's page cache, so the fsync below
                # writes them, and os.fsync releases the GIL.
                del arrays
                mm = None  # the writable mapping goes; readers map the renamed file read-only
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                assert target is not None
                os.replace(tmp, target)
                tmp = None
                _fsync_dir(target.parent)
                return cls.open(target)
        finally:
            if tmp is not None:
                del mm
                Path(tmp).unlink(missing_ok=True)
        return cls(
            key_base,
            arrays["keys"],
            arrays.get("codes"),
            arrays.get("postings"),
            arrays.get("offsets"),
            int(tag),
            dead=np.zeros((n + 7) // 8, np.uint8),
            head=arrays.get("head"),
            tail=arrays.get("tail"),
        )

    @classmethod
    def open(cls, path: str | Path) -> Base:
        """Map an existing base file read-only (pages shared with every other process)."""
        path = str(path)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                head = f.read(_HEADER)
        except FileNotFoundError as exc:
            raise BaseFileError(f"no base file at {path}") from exc
        try:
            header = json.loads(head.decode())
        except ValueError as exc:
            raise BaseFileError(f"{path} is not a PDQ base file") from exc
        if header.get("magic") != MAGIC or header.get("version") != VERSION:
            raise BaseFileError(f"{path} is not a version {VERSION} PDQ base file")
        # Files written before compact bases existed carry no "kind": they are multi-index.
        kind = header.get("kind", MULTI_INDEX)
        layout = {k: (int(v[0]), str(v[1]), list(v[2])) for k, v in header["layout"].items()}
        if kind not in KINDS or set(layout) != set(_ARRAYS[kind]):
            raise BaseFileError(f"{path}: unknown PDQ base kind or arrays")
        if st.st_size < _file_size(layout):
            raise BaseFileError(f"{path} is truncated")
        mm = np.memmap(path, np.uint8, "r")
        arrays = _views(mm, layout)
        n = int(header["n"])
        return cls(
            int(header["key_base"]),
            arrays["keys"],
            arrays.get("codes"),
            arrays.get("postings"),
            arrays.get("offsets"),
            int(header["tag"]),
            path=path,
            file_id=(st.st_dev, st.st_ino),
            dead=np.zeros((n + 7) // 8, np.uint8),
            head=arrays.get("head"),
            tail=arrays.get("tail"),
        )


def file_id(path: str | Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file now at `path`: changes when a new base is renamed in."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


# None until the first populate: whether madvise(MADV_POPULATE_READ) works on this kernel.
_populate_read_works: bool | None = None


def _madvise() -> Any:
    """libc's madvise through ctypes: a foreign call releases the GIL for its duration."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.madvise
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_libc_madvise: Any = _madvise() if sys.platform.startswith("linux") else None


def _populate(a: np.ndarray, stop: Any) -> str:
    """Fault the pages under the contiguous array `a` (part of a file mapping) into the
    page tables, a slice at a time; see `Base.populate`."""
    global _populate_read_works
    addr = int(a.__array_interface__["data"][0])
    flat = a.reshape(-1).view(np.uint8)  # a view: the arrays of a base are contiguous
    # madvise wants a page-aligned start; the arrays are 4 KiB aligned in the file, so this
    # is 0 except with larger pages.
    skew = addr % _PAGE
    for off in range(-skew, a.nbytes, _POPULATE_SLICE):
        if stop is not None and stop():
            return "stopped"
        end = min(a.nbytes, off + _POPULATE_SLICE)
        if _populate_read_works is not False and _libc_madvise is not None:
            if _libc_madvise(addr + off, end - off, _MADV_POPULATE_READ) == 0:
                _populate_read_works = True
                continue
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOSYS) or _populate_read_works:
                # Not "unsupported" (EINTR: a fatal signal is pending; EFAULT, EIO, ENOMEM):
                # leave the pages to the queries' faults, as before populating existed.
                return "none"
            _populate_read_works = False  # a kernel before 5.14, or not Linux: not asked again
        # Fallback: read one byte of each page, which faults it in as a query would, only
        # here. numpy runs a reduction over a strided view without the GIL, as ctypes does
        # the madvise call. Index max(off, 0) + k * page falls in the slice's k-th page.
        np.bitwise_or.reduce(flat[max(off, 0) : end : _PAGE])
    return "madvise" if _populate_read_works else "touch"


def _fill_postings(codes: U64Array, postings: np.ndarray, offsets: np.ndarray) -> None:
    n = codes.shape[0]
    halves = codes.view(np.uint16)  # (n, 16): chunk c is column c
    for c in range(CHUNKS):
        values = np.ascontiguousarray(halves[:, c])
        # argsort of uint16 is a radix sort; written straight into the narrower uint32 slot.
        postings[c * n : (c + 1) * n] = np.argsort(values, kind="stable")
        bounds = offsets[c * OFFSETS_PER_CHUNK : (c + 1) * OFFSETS_PER_CHUNK]
        bounds[0] = c * n
        np.cumsum(_value_counts(values), out=bounds[1:])
        bounds[1:] += c * n
        del values


# `np.bincount` finds its input's minimum and maximum with the GIL held: 111 ms for 100M values
# here, once per chunk of a build, which a query on another thread of the worker waited out
# (at 100M codes, multi-index, the slowest queries of a compaction, ~0.19 s every ~7.5 s).
# Counted a slice at a time, each call holds it for ~4 ms.
_COUNT_SLICE: Final = 1 << 22


def _value_counts(values: np.ndarray) -> np.ndarray:
    """How many times each of the CHUNK_VALUES values occurs in `values` (uint16)."""
    counts = np.zeros(CHUNK_VALUES, dtype=np.int64)
    for start in range(0, values.shape[0], _COUNT_SLICE):
        counts += np.bincount(values[start : start + _COUNT_SLICE], minlength=CHUNK_VALUES)
    return counts


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
