"""How long a worker holds its PDQ writer lock to adopt a base another worker compacted.

    PYTHONPATH=. .venv/bin/python bench/pdq_adopt.py [--size 10000000] [--layout multi-index]

Two `PDQIndex`es on one base file, as two workers of a host have, follow the same tagged log
(the same writes, in the same order). Both fill their delta to just short of the compaction
limit; then "builder" compacts (a new base file, tagged with its log position) while a thread
goes on applying writes to both at `--write-rate` a second, as their log followers do. When the
builder is done, "adopter" calls `refresh_base()` (the server's poll) with the writes still
going on: it must redo onto the new base its writes past the base's tag. Its writer lock is
wrapped to time every hold; printed: the refresh's time, the writes redone, the longest hold
of the lock during the refresh, and the slowest of the adopter's writes meanwhile beside
their median before. The Signet code is whatever PYTHONPATH names (run an export for "before").
Pinned to one CPU, as bench/pdq_index.py is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import numpy as np  # noqa: E402

from app.signals.pdq_index import PDQIndex  # noqa: E402


class TimedLock:
    """A threading.Lock that notes (start, seconds held, thread name) of every hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.holds: list[tuple[float, float, str]] = []
        self._since = 0.0

    def acquire(self, *args: Any) -> bool:
        ok = self._lock.acquire(*args)
        if ok:
            self._since = time.perf_counter()
        return ok

    def release(self) -> None:
        since = self._since
        self.holds.append((since, time.perf_counter() - since, threading.current_thread().name))
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=10_000_000)
    p.add_argument("--layout", default="multi-index")
    p.add_argument("--write-rate", type=float, default=100.0)
    p.add_argument("--dir", type=Path, default=Path("data/bench-pdq"))
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args()
    n = args.size
    rng = np.random.default_rng(args.seed)
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"adopt-{n}-{args.layout}.pdqbase"
    keys = np.arange(n, dtype=np.int64) * 7 + 1_000_000
    big = dict(min_delta=1 << 40, layout=args.layout)
    t0 = time.perf_counter()
    builder = PDQIndex.from_arrays(
        keys, rng.integers(0, 256, size=(n, 32), dtype=np.uint8), path=path, tag=0, **big
    )
    adopter = PDQIndex(path=path, **big)
    print(f"{n:,} {args.layout}: base built in {time.perf_counter() - t0:.1f} s", flush=True)
    tag = [0]
    next_key = iter(range(n * 7 + 1_000_000, 1 << 62, 7))
    fill = max(4096, n // 32) - 50
    for start in range(0, fill, 10_000):
        count = min(10_000, fill - start)
        new = np.fromiter((next(next_key) for _ in range(count)), np.int64, count)
        codes = rng.integers(0, 256, size=(count, 32), dtype=np.uint8)
        tag[0] += 1
        builder.add_many(new, codes, tag=tag[0])
        adopter.add_many(new, codes, tag=tag[0])
    lock = TimedLock()
    adopter._lock = lock  # type: ignore[assignment]
    stop = threading.Event()
    writes: list[tuple[float, float]] = []

    def write_loop() -> None:  # both workers follow the log: the same tagged writes
        period, due, turn = 1 / args.write_rate, time.perf_counter(), 0
        while not stop.is_set():
            turn += 1
            tag[0] += 1
            if turn % 2:
                key, code = next(next_key), rng.bytes(32)
                builder.add(key, code, tag=tag[0])
                t = time.perf_counter()
                adopter.add(key, code, tag=tag[0])
            else:
                key = int(rng.integers(n)) * 7 + 1_000_000
                builder.remove(key, tag=tag[0])
                t = time.perf_counter()
                adopter.remove(key, tag=tag[0])
            writes.append((t, time.perf_counter() - t))
            due = max(due + period, time.perf_counter())
            stop.wait(max(0.0, due - time.perf_counter()))

    writer = threading.Thread(target=write_loop, name="log-follower")
    writer.start()
    t0 = time.perf_counter()
    builder.compact()
    compaction = time.perf_counter() - t0
    base_tag = builder.base_tag
    time.sleep(0.5)  # the poll comes a little later
    journal = len(adopter._journal)
    r0 = time.perf_counter()
    assert adopter.refresh_base()
    r1 = time.perf_counter()
    time.sleep(0.5)
    stop.set()
    writer.join()
    redone = tag[0] - base_tag  # about: the writes tagged past the base (a few after the refresh)
    holds = [h for h in lock.holds if r0 <= h[0] <= r1 and h[2] == "MainThread"]
    if os.environ.get("ADOPT_DEBUG"):
        print([(round((h[0] - r0) * 1e3, 2), round(h[1] * 1e3, 2)) for h in holds])
    before = [s for t, s in writes if t < r0]
    during = [s for t, s in writes if r0 <= t <= r1 or (t < r0 and t + s > r0)]
    print(
        f"compaction {compaction:.2f} s (base tag {base_tag}); adopter's journal {journal:,} "
        f"writes, ~{redone:,} past the base's tag\n"
        f"refresh_base {(r1 - r0) * 1e3:.1f} ms; writer lock held by it "
        f"{len(holds)} times, longest {max(h[1] for h in holds) * 1e3:.2f} ms, "
        f"in all {sum(h[1] for h in holds) * 1e3:.2f} ms\n"
        f"adopter's writes: median before {statistics.median(before) * 1e3:.3f} ms; "
        f"{len(during)} during the refresh, slowest "
        f"{max(during, default=0.0) * 1e3:.2f} ms",
        flush=True,
    )
    path.unlink(missing_ok=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
