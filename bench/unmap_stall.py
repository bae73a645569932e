"""Does dropping a large, fully mapped shared file mapping stall page faults elsewhere?

    .venv/bin/python bench/unmap_stall.py [--old-gib 6] [--new-gib 6] [--slice-mib 64]
        [--modes plain,sliced] [--dir DIR] [--no-pin]

Standalone (no Signet code): it reproduces what a compaction does when it lets go of the base it
replaced. For each mode it writes two files into the page cache, maps "old" read-only and touches
every page of it (a long-running worker's base), unlinks it (the rename of a new base over it),
then on one thread drops the old mapping while a second thread faults pages of "new" (a query on
the new base: one byte per 4 KiB page, 64 pages per iteration, each iteration timed) and a third
only sleeps 1 ms in a loop (the GIL and the CPU). Modes:

- plain: drop the last reference of the mmap object (its dealloc munmaps with the GIL released),
  as `PDQIndex.compact` did;
- sliced: first `madvise(MADV_DONTNEED)` the mapping a slice at a time, then drop it.

Prints, per mode, how long the drop took and the faulting and sleeping threads' slowest
iterations during it beside their medians before it. Pinned to one CPU (as the PDQ bench is)
unless --no-pin.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

GIB = 1 << 30
MIB = 1 << 20
PAGE = 4096


def write_file(path: Path, size: int, mapped: bool) -> None:
    chunk = np.random.default_rng(len(str(path))).integers(0, 255, 64 * MIB, np.uint8).tobytes()
    if mapped:  # as Base.build writes a base: through a shared writable mapping of a sparse file
        with open(path, "wb") as f:
            f.truncate(size)
        mm = np.memmap(path, np.uint8, "r+")
        src = np.frombuffer(chunk, np.uint8)
        for start in range(0, size, len(chunk)):
            mm[start : start + len(chunk)] = src
        del mm
        return
    with open(path, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)


def touch_all(mm: mmap.mmap) -> None:
    view = np.frombuffer(mm, np.uint8)
    int(view[::PAGE].sum())  # one byte per page: maps every page
    del view


MADV_PAGEOUT = 21
_libc = ctypes.CDLL(None, use_errno=True)  # a CDLL call releases the GIL
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def zap_sliced(mm: mmap.mmap, slice_bytes: int, mode: str, fd: int) -> float:
    """Release the mapping a slice at a time; the longest slice's seconds."""
    addr = np.frombuffer(mm, np.uint8).ctypes.data
    longest = 0.0
    for start in range(0, len(mm), slice_bytes):
        length = min(slice_bytes, len(mm) - start)
        t0 = time.perf_counter()
        if mode == "sliced":
            mm.madvise(mmap.MADV_DONTNEED, start, length)
        elif mode == "pageout":
            if _libc.madvise(addr + start, length, MADV_PAGEOUT) != 0:
                raise OSError(ctypes.get_errno(), "madvise")
        elif mode == "fadvise":
            mm.madvise(mmap.MADV_DONTNEED, start, length)
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
        longest = max(longest, time.perf_counter() - t0)
        time.sleep(0)
    return longest


def run(
    mode: str, old_size: int, new_size: int, slice_bytes: int, directory: Path, mapped: bool
) -> None:
    old_path, new_path = directory / "old.bin", directory / "new.bin"
    write_file(old_path, old_size, mapped)
    write_file(new_path, new_size, mapped)
    with open(old_path, "rb") as f:
        old: mmap.mmap | None = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    assert old is not None
    touch_all(old)
    fd = os.open(old_path, os.O_RDONLY)
    old_path.unlink()
    with open(new_path, "rb") as f:
        new = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    new_view = np.frombuffer(new, np.uint8)
    pages_per_iter = 64
    stop = threading.Event()
    faults: list[tuple[float, float, int]] = []  # (start, seconds, minor faults)
    sleeps: list[tuple[float, float]] = []

    def fault_loop() -> None:
        pos = 0
        while not stop.is_set() and pos + pages_per_iter * PAGE <= new_size:
            r0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            t0 = time.perf_counter()
            int(new_view[pos : pos + pages_per_iter * PAGE : PAGE].sum())
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            faults.append((t0, t1 - t0, r1 - r0))
            pos += pages_per_iter * PAGE
            time.sleep(0.0005)

    def sleep_loop() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            sleeps.append((t0, time.perf_counter() - t0))

    work: list[tuple[float, float]] = []
    block = np.random.default_rng(1).integers(0, 1 << 62, 1 << 18, np.uint64)

    def work_loop() -> None:  # CPU-bound, GIL released: a scan's shape
        while not stop.is_set():
            t0 = time.perf_counter()
            for _ in range(20):
                np.bitwise_count(block ^ np.uint64(12345)).sum()
            work.append((t0, time.perf_counter() - t0))

    threads = [
        threading.Thread(target=fault_loop),
        threading.Thread(target=sleep_loop),
        threading.Thread(target=work_loop),
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)
    d0 = time.perf_counter()
    zap = longest = 0.0
    if mode != "plain":
        longest = zap_sliced(old, slice_bytes, mode, fd)
        zap = time.perf_counter() - d0
    os.close(fd)
    old = None  # the last reference: munmap (GIL released), then the unlinked file's pages go
    d1 = time.perf_counter()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    new_view = None  # type: ignore[assignment]
    new.close()
    new_path.unlink()

    def summary(rows: list[tuple[float, float]] | list[tuple[float, float, int]]) -> str:
        before = [r[1] for r in rows if r[0] < d0]
        during = [r for r in rows if d0 <= r[0] <= d1 or (r[0] < d0 and r[0] + r[1] > d0)]
        if not before or not during:
            return f"{len(during)} iterations during"
        worst = max(during, key=lambda r: r[1])
        return (
            f"median before {statistics.median(before) * 1e3:.2f} ms, "
            f"{len(during)} during, max {worst[1] * 1e3:.1f} ms at {worst[0] - d0:+.2f} s"
            + (f" ({worst[2]} faults)" if len(worst) > 2 else "")  # type: ignore[misc]
        )

    drop = d1 - d0
    print(
        f"{mode:6}: drop {drop * 1e3:.0f} ms"
        + (
            f" (slices {zap * 1e3:.0f} ms, longest {longest * 1e3:.1f} ms;"
            f" munmap {(drop - zap) * 1e3:.0f} ms)"
            if zap
            else ""
        )
    )
    print(f"        faulting thread: {summary(faults)}")
    print(f"        sleeping thread: {summary(sleeps)}")
    print(f"        CPU-bound thread: {summary(work)}")
    print(f"        faults during: {sum(r[2] for r in faults if d0 <= r[0] <= d1)}")
    sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--old-gib", type=float, default=6.0)
    p.add_argument("--new-gib", type=float, default=6.0)
    p.add_argument("--slice-mib", type=int, default=64)
    p.add_argument("--modes", default="plain,sliced,plain,sliced")
    p.add_argument("--dir", type=Path, default=Path("/tmp"))
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--mapped", action="store_true", help="write the files through a mapping")
    args = p.parse_args()
    if not args.no_pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"Linux {os.uname().release}, pinned: {not args.no_pin}, slices {args.slice_mib} MiB")
    for mode in args.modes.split(","):
        run(
            mode,
            int(args.old_gib * GIB) // (64 * MIB) * 64 * MIB,
            int(args.new_gib * GIB) // (64 * MIB) * 64 * MIB,
            args.slice_mib * MIB,
            args.dir,
            args.mapped,
        )


if __name__ == "__main__":
    main()
