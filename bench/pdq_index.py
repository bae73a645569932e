"""PDQ range search (Hamming <= t) on one core: PDQIndex against the scan baselines.

    .venv/bin/python bench/pdq_index.py [--sizes 100000,1000000,10000000] [--queries 1000]
        [--layouts multi-index,compact] [--workers 2 --worker-seconds 60]

Data: uniform random 256-bit codes; for every query, neighbours planted at known distances
(0, 8, 16, 24, 31 inside t = 31; 32 and 40 outside). Baselines measured in the same run: the
memory-bandwidth bound of a full scan (DRAM read rate / 32 N bytes), numpy brute force
(blocked bitwise_count scan) and FAISS IndexBinaryFlat.range_search (radius t + 1: FAISS's
radius is strict). Each PDQIndex layout (SIGNET_PDQ_LAYOUT) gets its own rows: "multi-index"
probes chunk tables, "compact" keeps only codes and keys and scans them through FAISS's Hamming
range search over the mapped file. Prints the machine and markdown tables for the README.

`--workers N`: for each file-backed layout, one worker process alone and then N together (spawned,
so each maps the base file itself, as `signet serve` workers do; one CPU each) answer the planted
queries in batches of BATCH for `--worker-seconds`; the table gives each worker's queries/s and
recall, and the host's memory as the sum of the workers' PSS (a page of the shared file counted
once across them), read from /proc while they are still alive after querying.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import queue
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import (  # pin_one_core() must run before numpy starts its thread pools
    Stopwatch,
    best_time,
    fmt_rate,
    machine_info,
    mapped_pss,
    pin_one_core,
    print_table,
    read_bandwidth,
    smaps_rollup,
)

CPUS = sorted(os.sched_getaffinity(0))  # before pinning: the CPUs the workers may spread over
pin_one_core()

import numpy as np  # noqa: E402

from app.signals.pdq_base import Base, file_id  # noqa: E402
from app.signals.pdq_index import MULTI_INDEX, PDQIndex, scan_codes  # noqa: E402

try:
    import faiss  # type: ignore[import-untyped]

    faiss.omp_set_num_threads(1)
except ImportError:  # FAISS is an optional baseline
    faiss = None

THRESHOLD = 31
INSIDE = (0, 8, 16, 24, 31)
OUTSIDE = (32, 40)
BATCH = 100
REPEAT = 3  # passes over the queries; the best is reported
BASELINE_SECONDS = 3.0  # time budget per scan baseline; it uses fewer queries when slow


def flip_bits(code: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(code)
    bits[rng.choice(256, size=count, replace=False)] ^= 1
    return np.packbits(bits)


def make_data(
    n: int, queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[set[int]]]:
    """Codes, their keys, query codes, and for each query the keys planted within t."""
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    keys = np.arange(n, dtype=np.int64) * 7 + 1_000_000  # sparse, like row ids
    query_codes = rng.integers(0, 256, size=(queries, 32), dtype=np.uint8)
    per_query = len(INSIDE) + len(OUTSIDE)
    rows = rng.choice(n, size=queries * per_query, replace=False)
    planted: list[set[int]] = []
    for i in range(queries):
        inside: set[int] = set()
        for j, d in enumerate(INSIDE + OUTSIDE):
            row = int(rows[i * per_query + j])
            codes[row] = flip_bits(query_codes[i], d, rng)
            if d <= THRESHOLD:
                inside.add(int(keys[row]))
        planted.append(inside)
    return codes, keys, query_codes, planted


MEMORY: list[dict[str, str]] = []  # one row per size: memory per host beside the raw codes


def memory_row(n: int, index: PDQIndex, path: Path | None) -> None:
    """Memory per host: the shared base file once, plus each worker's private part."""
    mine = index.memory_report()
    other = PDQIndex(path=path).memory_report() if path is not None else mine  # worker 2
    raw = 32 * n
    host = mine["shared"] + mine["private"] + other["private"]
    # Not measured: what the layout before issue 15 (int64 keys and epochs, a private copy per
    # worker) would take, from its array sizes. It is labelled as such in the table.
    old = 2 * (112 * n + 16 * 65537 * 8)
    MEMORY.append(
        {
            "codes": f"{n:,}",
            "layout": index.layout,
            "raw codes": f"{raw / 2**20:,.0f} MiB",
            "base file (shared)": f"{mine['shared'] / 2**20:,.0f} MiB",
            "private per worker": f"{mine['private'] / 2**20:,.1f} MiB",
            "per host, 2 workers": f"{host / 2**20:,.0f} MiB ({host / raw:.2f}x raw)",
            "previous layout, 2 workers (modelled)": f"{old / 2**20:,.0f} MiB ({old / raw:.2f}x)",
            "FAISS flat, 2 workers (modelled)": f"{2 * raw / 2**20:,.0f} MiB (2.00x raw)",
        }
    )


REUSE = False  # --reuse-base: map a base file an earlier run of the same size/seed left
SKIP_UPDATES = False  # --skip-updates: no insert/delete/compaction section (slow at 100M)
KEEP = False  # --keep-base: leave the base files in place
WORKERS = 0  # --workers: real processes that query the base file together (0: none)
WORKER_SECONDS = 20.0  # --worker-seconds: how long they query (at least one pass each)
WORKER_ROWS: list[dict[str, str]] = []
WORKER_TOTALS: list[tuple[int, dict[str, str], float]] = []  # (n, host row, queries/s): + FAISS


def _worker(
    i: int,
    cpu: int,
    seconds: float,
    path: str,
    layout: str,
    query_codes: np.ndarray,
    planted: list[set[int]],
    out: Any,
    go: Any,
    release: Any,
) -> None:
    """One worker process: map the base, wait for the others, answer batches of the planted
    queries for `seconds` (at least one pass), report, and stay alive until the parent has
    read its memory. Arguments only: a spawned process re-imports this module, so the parent's
    settings (globals set by main) are not there."""
    os.sched_setaffinity(0, {cpu})
    with Stopwatch() as load:
        index = PDQIndex(path=path, layout=layout)  # what a server worker maps at start-up
    out.put((i, load.seconds))
    go.wait()
    done = found = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while done < len(query_codes) or time.perf_counter() - start < seconds:
        at = done % len(query_codes)
        hits = index.query_many(query_codes[at : at + BATCH], THRESHOLD)
        if done < len(query_codes):  # recall over the first pass
            found += sum(len(planted[at + j] & {k for k, _ in h}) for j, h in enumerate(hits))
        done += len(hits)
    out.put((i, (done, time.perf_counter() - start, time.process_time() - cpu_start, found)))
    release.wait()


def _receive(out: Any, procs: list[Any]) -> list[Any]:
    """One message from each worker, in worker order; raises if one dies first."""
    got: dict[int, Any] = {}
    while len(got) < len(procs):
        try:
            i, value = out.get(timeout=1.0)
        except queue.Empty:
            if any(p.exitcode is not None for p in procs):
                raise RuntimeError("a worker exited early; its traceback is above") from None
            continue
        got[i] = value
    return [got[i] for i in range(len(procs))]


def run_workers(
    count: int,
    n: int,
    path: Path,
    layout: str,
    query_codes: np.ndarray,
    planted: list[set[int]],
    baseline: float,
) -> None:
    """`count` processes query the base file at `path` at the same time; one row each, and one
    for the host. `baseline`: this layout's single-process queries/s (batch BATCH)."""
    ctx = mp.get_context("spawn")  # not fork: each worker maps the file itself
    out, go, release = ctx.Queue(), ctx.Event(), ctx.Event()
    cpus = [CPUS[i % len(CPUS)] for i in range(count)]
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                i,
                cpus[i],
                WORKER_SECONDS,
                str(path),
                layout,
                query_codes,
                planted,
                out,
                go,
                release,
            ),
            daemon=True,
        )
        for i in range(count)
    ]
    for p in procs:
        p.start()
    try:
        loads = _receive(out, procs)
        go.set()
        results = _receive(out, procs)
        # Still alive: each waits for `release`.
        memory = [smaps_rollup(p.pid) for p in procs]
        in_file = [mapped_pss(p.pid, str(path.resolve())) for p in procs]
        load_avg = os.getloadavg()[0]
    finally:
        release.set()
        for p in procs:
            p.join(timeout=30)
            if p.exitcode is None:
                p.kill()
    planted_total = sum(len(p) for p in planted)
    raw = 32 * n
    mib = 1 / 1024  # smaps_rollup counts KiB
    rates = []
    for i, (load, (done, seconds, cpu_seconds, found), m, f) in enumerate(
        zip(loads, results, memory, in_file, strict=True)
    ):
        rates.append(done / seconds)
        WORKER_ROWS.append(
            {
                "codes": f"{n:,}",
                "layout": layout,
                "process": f"worker {i} (cpu {cpus[i]})",
                "load": f"{load * 1e3:.1f} ms",
                f"queries/s, batch {BATCH}": f"{fmt_rate(rates[-1])} ({done} in {seconds:.1f} s)",
                # On a shared machine the scheduler's share varies; the work per query does not.
                "CPU share": f"{cpu_seconds / seconds:.0%}",
                "queries per CPU s": fmt_rate(done / cpu_seconds),
                "recall t<=31": f"{found / planted_total:.2%}",
                "PSS": f"{m['Pss'] * mib:,.0f} MiB",
                "PSS in the base file": f"{f * mib:,.0f} MiB",
                "RSS": f"{m['Rss'] * mib:,.0f} MiB",
                "shared": f"{(m['Shared_Clean'] + m['Shared_Dirty']) * mib:,.0f} MiB",
                "private": f"{(m['Private_Clean'] + m['Private_Dirty']) * mib:,.0f} MiB",
                "anonymous": f"{m['Anonymous'] * mib:,.0f} MiB",
            }
        )
    host = sum(m["Pss"] for m in memory) * 1024
    total: dict[str, str] = {
        "codes": f"{n:,}",
        "layout": layout,
        "process": f"host: {count} worker{'s' if count > 1 else ''} (load avg {load_avg:.2f})",
        f"queries/s, batch {BATCH}": f"{fmt_rate(sum(rates))} "
        f"({sum(rates) / baseline:.2f}x in-process {fmt_rate(baseline)})",
        "PSS": f"{host / 2**20:,.0f} MiB = {host / raw:.2f}x raw ({raw / 2**20:,.0f} MiB)",
        "PSS in the base file": f"{sum(in_file) * mib:,.0f} MiB",
        "shared": f"base file {path.stat().st_size / 2**20:,.0f} MiB",
    }
    WORKER_ROWS.append(total)
    WORKER_TOTALS.append((n, total, sum(rates)))


def run_size(
    n: int,
    queries: int,
    bandwidth: float,
    seed: int,
    base_dir: Path | None = None,
    layouts: tuple[str, ...] = (MULTI_INDEX,),
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rng = np.random.default_rng(seed)
    codes, keys, query_codes, planted = make_data(n, queries, rng)
    rows: list[dict[str, str]] = []

    def row(method: str, single: float, batched: float | None, recall: str, note: str) -> None:
        rows.append(
            {
                "codes": f"{n:,}",
                "method": method,
                "queries/s": fmt_rate(single),
                f"queries/s, batch {BATCH}": fmt_rate(batched) if batched else "",
                "ms/query": f"{1e3 / single:.3g}",
                "recall t<=31": recall,
                "notes": note,
            }
        )

    row(
        "memory-bandwidth bound", bandwidth / (32 * n), None, "", f"{bandwidth / 1e9:.1f} GB/s read"
    )

    # ---- PDQIndex, each layout (its base in a file under `base_dir`, mapped read-only)
    answers: list[list[tuple[int, int]]] = []
    index_rates: dict[int, float] = {}  # row number -> that layout's single queries/s
    update_rows: list[dict[str, str]] = []
    for layout in layouts:
        at = len(rows)
        got, update, index_rates[at] = run_layout(
            layout, n, keys, codes, query_codes, planted, row, seed, queries, base_dir, rng
        )
        if answers:
            assert got == answers, f"{layout} disagrees with {layouts[0]}"
        answers = got
        update_rows.append(update)
        gc.collect()

    # ---- numpy brute force: also the exactness check of the index on a sample
    sample = max(1, min(queries, int(BASELINE_SECONDS / max(1e-9, 10e-9 * n))))
    with Stopwatch() as scan:
        for i in range(sample):
            expected = [(int(keys[r]), d) for r, d in scan_codes(codes, query_codes[i].tobytes())]
            expected.sort(key=lambda kd: (kd[1], kd[0]))
            assert answers[i] == expected, f"index differs from brute force on query {i}"
    row(
        "numpy brute force (bitwise_count)",
        sample / scan.seconds,
        None,
        "100.00%",
        f"{sample} queries; matches index",
    )

    # ---- FAISS IndexBinaryFlat
    faiss_single = None
    if faiss is not None:
        flat = faiss.IndexBinaryFlat(256)
        with Stopwatch() as fbuild:
            flat.add(codes)
        fsample = max(1, min(queries, int(BASELINE_SECONDS / max(1e-9, 4e-9 * n))))
        with Stopwatch() as fsingle:
            for i in range(fsample):
                _lims, dist, ids = flat.range_search(query_codes[i : i + 1], THRESHOLD + 1)
                got = sorted(
                    zip(keys[ids].tolist(), dist.tolist(), strict=True),
                    key=lambda kd: (kd[1], kd[0]),
                )
                assert got == answers[i], f"FAISS differs from index on query {i}"
        fbatch = min(fsample, BATCH)
        fb = best_time(lambda: flat.range_search(query_codes[:fbatch], THRESHOLD + 1), repeat=1)
        faiss_single = fsample / fsingle.seconds
        row(
            "FAISS IndexBinaryFlat.range_search",
            faiss_single,
            fbatch / fb,
            "100.00%",
            f"add {fbuild.seconds:.2f} s"
            + (f"; batched: {fbatch} queries (the sample)" if fbatch < BATCH else ""),
        )
        del flat
    if faiss_single:
        for at, index_single in index_rates.items():
            rows[at]["notes"] += f"; {index_single / faiss_single:.1f}x FAISS"
        for size, total, rate in WORKER_TOTALS:
            if size == n:
                total["FAISS flat, one process"] = (
                    f"{fmt_rate(fbatch / fb)} (workers: {rate / (fbatch / fb):.1f}x)"
                )
    return rows, update_rows


def run_layout(
    layout: str,
    n: int,
    keys: np.ndarray,
    codes: np.ndarray,
    query_codes: np.ndarray,
    planted: list[set[int]],
    row: Any,
    seed: int,
    queries: int,
    base_dir: Path | None,
    rng: np.random.Generator,
) -> tuple[list[list[tuple[int, int]]], dict[str, str], float]:
    """Build (or map) the index in `layout`, time its queries, then its updates."""

    # The planted data depend on n, the seed and the query count: all name the file.
    path = (
        base_dir / f"bench-{n}-{seed}-{queries}-{layout}.pdqbase" if base_dir is not None else None
    )
    with Stopwatch() as build:
        if REUSE and path is not None and path.exists():
            index = PDQIndex(path=path, layout=layout)  # same data: nothing to rebuild
            assert len(index) == n and index.query(codes[0].tobytes(), 0)
        else:
            index = PDQIndex.from_arrays(keys, codes, path=path, layout=layout)
    build_note = (
        "reused base file" if REUSE and path is not None else f"build {build.seconds:.2f} s"
    )
    index.query(query_codes[0].tobytes())  # warm the probe plan
    answers: list[list[tuple[int, int]]] = []
    batch_answers: list[list[tuple[int, int]]] = []

    def run_single(index: PDQIndex = index) -> None:
        answers[:] = [index.query(q.tobytes(), THRESHOLD) for q in query_codes]

    def run_batched(index: PDQIndex = index) -> None:
        batch_answers.clear()
        for start in range(0, queries, BATCH):
            batch_answers.extend(index.query_many(query_codes[start : start + BATCH], THRESHOLD))

    # Best of a few passes: neighbours on a shared machine add noise, never speed.
    single_seconds = best_time(run_single, repeat=REPEAT)
    batched_seconds = best_time(run_batched, repeat=REPEAT)
    del run_single, run_batched
    assert batch_answers == answers, "query_many disagrees with query"
    found = sum(len(planted[i] & {k for k, _ in answers[i]}) for i in range(queries))
    recall = found / sum(len(p) for p in planted)
    index_single = queries / single_seconds
    memory = index.memory_bytes()
    method = {
        "multi-index": "PDQIndex, multi-index (numpy, multi-index hashing)",
        "compact": "PDQIndex, compact (FAISS range search over the code halves, then the tails)",
    }[layout]
    row(
        method,
        index_single,
        queries / batched_seconds,
        f"{recall:.2%}",
        f"{build_note}; {memory / 2**20:.0f} MiB ({memory / n:.0f} B/code)",
    )
    if WORKERS and path is not None:
        # Unmapped here first: pages this process maps would take a share of the workers' PSS.
        del index
        gc.collect()
        assert str(path.resolve()) not in Path("/proc/self/maps").read_text(), "still mapped"
        for count in sorted({1, WORKERS}):  # one alone: the same code path's own baseline
            run_workers(count, n, path, layout, query_codes, planted, queries / batched_seconds)
        index = PDQIndex(path=path, layout=layout)

    if SKIP_UPDATES:
        memory_row(n, index, path)
        del index
        remove_base(path)
        return answers, {"codes": f"{n:,}", "layout": layout, "build": build_note}, index_single
    # ---- updates
    fresh = rng.integers(0, 256, size=(1000, 32), dtype=np.uint8)
    fresh_keys = np.arange(1000, dtype=np.int64) * -3 - 1  # disjoint from existing keys
    with Stopwatch() as ins:
        for k, c in zip(fresh_keys.tolist(), fresh, strict=True):
            index.add(k, c.tobytes())
    victims = rng.choice(keys, size=1000, replace=False).tolist()
    with Stopwatch() as dele:
        for k in victims:
            index.remove(k)
    with Stopwatch() as delta_q:
        for q in query_codes[: min(queries, 200)]:
            index.query(q.tobytes(), THRESHOLD)
    with Stopwatch() as comp:
        index.compact()
    with Stopwatch() as bulk:
        index.add_many(fresh_keys + 1, fresh)  # 1,000 re-inserts in one call
    memory_row(n, index, path)
    updates = {
        "codes": f"{n:,}",
        "layout": layout,
        "insert 1,000 (add)": f"{ins.seconds * 1e3:.1f} ms",
        "delete 1,000 (remove)": f"{dele.seconds * 1e3:.1f} ms",
        "add_many 1,000": f"{bulk.seconds * 1e3:.1f} ms",
        "queries/s with 1k delta + 1k tombstones": fmt_rate(min(queries, 200) / delta_q.seconds),
        "compact": f"{comp.seconds:.2f} s",
        "build": f"{build.seconds:.2f} s",
    }
    del index
    remove_base(path)
    return answers, updates, index_single


def remove_base(path: Path | None) -> None:
    """Drop a layout's base file (and its lock) before the next layout is built: at 100M the
    files of both layouts would not fit in this machine's page cache together."""
    gc.collect()
    if path is not None and not KEEP:
        for f in path.parent.glob(path.name + "*"):
            f.unlink()


# --------------------------------------------------------------------------- compaction stall

STALL_WRITE_RATE = 100.0  # --stall-write-rate: add/remove calls per second beside the queries
STALL_ROWS: list[dict[str, str]] = []


def _ms(seconds: np.ndarray, q: float | None = None) -> str:
    if seconds.size == 0:
        return ""
    value = seconds.max() if q is None else np.quantile(seconds, q)
    return f"{value * 1e3:.3g} ms"


def _streams(
    index: PDQIndex,
    query_codes: np.ndarray,
    write: Any,
    until: Any,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Single queries back to back on one thread and `write()` at STALL_WRITE_RATE on another,
    as a server's request and sync threads do, until `until()` returns (on this thread).
    Returns (start, seconds) of every query and every write."""
    import threading

    stop = threading.Event()
    queries: list[tuple[float, float]] = []
    writes: list[tuple[float, float]] = []

    def query_loop() -> None:
        i = 0
        while not stop.is_set():
            code = query_codes[i % len(query_codes)].tobytes()
            start = time.perf_counter()
            index.query(code, THRESHOLD)
            queries.append((start, time.perf_counter() - start))
            i += 1

    def write_loop() -> None:
        period = 1 / STALL_WRITE_RATE
        due = time.perf_counter()
        while not stop.is_set():
            start = time.perf_counter()
            write()
            writes.append((start, time.perf_counter() - start))
            # A steady rate, not a burst to catch up after a slow write.
            due = max(due + period, time.perf_counter())
            stop.wait(max(0.0, due - time.perf_counter()))

    threads = [threading.Thread(target=f, daemon=True) for f in (query_loop, write_loop)]
    for t in threads:
        t.start()
    try:
        until()
    finally:
        stop.set()
        for t in threads:
            t.join()
    return queries, writes


def run_stall(n: int, layout: str, seed: int, base_dir: Path) -> None:
    """Queries and writes timed one by one while a background compaction of a base of n
    codes runs, then for as long again without one (the same run's baseline)."""
    rng = np.random.default_rng(seed)
    path = base_dir / f"stall-{n}-{seed}-{layout}.pdqbase"
    keys = np.arange(n, dtype=np.int64) * 7 + 1_000_000
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    # Queries near stored codes, so each has answers to gather.
    query_codes = np.stack([flip_bits(c, 8, rng) for c in codes[rng.choice(n, 200)]])
    with Stopwatch() as build:
        # As the server's indexes are (app/signals/match_index.py): file-backed, and the write
        # that crosses the limit starts the compaction on the "pdq-compact" thread.
        index = PDQIndex.from_arrays(
            keys, codes, path=path, layout=layout, background_compaction=True
        )
    del codes
    gc.collect()
    del keys
    next_key = iter(range(n * 7 + 1_000_000, 1 << 62, 7))  # new row ids: above the base's
    turn = [0]

    def write() -> None:
        """Alternately a new code and the removal of a random stored one."""
        turn[0] += 1
        if turn[0] % 2:
            index.add(next(next_key), rng.bytes(32))
        else:
            index.remove(int(rng.integers(n)) * 7 + 1_000_000)

    def fill(count: int) -> None:
        new = np.fromiter((next(next_key) for _ in range(count)), np.int64, count)
        index.add_many(new, rng.integers(0, 256, size=(count, 32), dtype=np.uint8))

    # Just short of due, as a server's delta is before the write that starts a compaction
    # (short by more than the few writes the write thread makes before `compaction` runs).
    limit = max(index._min_delta, int(index._delta_fraction * n))
    filled = limit - 50
    fill(filled)
    assert index._compactor is None, "the fill itself started a compaction"
    first_file = file_id(path)
    window: dict[str, float] = {}
    # How long populating the new base took (code that has `Base.populate`; run with an older
    # `app` on PYTHONPATH this bench times the old code, which has none).
    populated: list[float] = []
    populate = getattr(Base, "populate", None)
    if populate is not None:

        def timed_populate(self: Base, stop: Any = None) -> str:
            t0 = time.perf_counter()
            try:
                how: str = populate(self, stop)
                return how
            finally:
                populated.append(time.perf_counter() - t0)

        Base.populate = timed_populate  # type: ignore[method-assign]

    def compaction() -> None:
        window["start"] = time.perf_counter()
        window["start_wall"] = time.time()
        fill(51)  # over the limit: this write starts the background compaction
        assert index._compactor is not None
        index.wait_for_compaction()
        window["end"] = time.perf_counter()

    faults = [resource.getrusage(resource.RUSAGE_SELF)]
    during = _streams(index, query_codes, write, compaction)
    faults.append(resource.getrusage(resource.RUSAGE_SELF))
    seconds = window["end"] - window["start"]
    assert file_id(path) != first_file, "no new base was written"
    # The baseline: a delta of the same size again (the compaction folded it into the base),
    # the same streams for as long, and no compaction.
    fill(filled - index._snap.delta_len - index._base_dead)
    second_file, compactor = file_id(path), index._compactor
    window["base_start"] = time.perf_counter()
    faults.append(resource.getrusage(resource.RUSAGE_SELF))
    baseline = _streams(index, query_codes, write, lambda: time.sleep(seconds))
    window["base_end"] = time.perf_counter()
    faults.append(resource.getrusage(resource.RUSAGE_SELF))
    if populate is not None:
        Base.populate = populate  # type: ignore[method-assign]
    assert index._compactor is compactor and file_id(path) == second_file, "it compacted"

    for name, (queries, writes), lo, hi in (
        ("during compaction", during, window["start"], window["end"]),
        ("baseline, no compaction", baseline, window["base_start"], window["base_end"]),
    ):
        q = np.array([s for t, s in queries if lo <= t < hi])
        w = np.array([s for t, s in writes if lo <= t < hi])
        # When the slowest of each started, in seconds into the phase: tells a stall of the
        # build from one of the machine (a neighbour's process) or of the phase's start.
        q_at = max(((s, t - lo) for t, s in queries if lo <= t < hi), default=(0.0, 0.0))[1]
        w_at = max(((s, t - lo) for t, s in writes if lo <= t < hi), default=(0.0, 0.0))[1]
        STALL_ROWS.append(
            {
                "codes": f"{n:,}",
                "layout": layout,
                "phase": name,
                "seconds": f"{hi - lo:.1f}",
                "queries": str(q.size),
                "query p50": _ms(q, 0.5),
                "p99": _ms(q, 0.99),
                "p99.9": _ms(q, 0.999),
                "max": _ms(q),
                "max at": f"{q_at:.1f} s",
                "writes": str(w.size),
                "write p50": _ms(w, 0.5),
                "write max": _ms(w),
                "write max at": f"{w_at:.1f} s",
            }
        )
    print(
        f"{n:,} {layout}: base build {build.seconds:.1f} s; delta {filled:,} (limit {limit:,}); "
        f"background compaction {seconds:.2f} s from "
        + time.strftime("%H:%M:%S", time.gmtime(window["start_wall"]))
        + f".{int(window['start_wall'] % 1 * 1000):03d} UTC"
        + (f" (populating the new base: {sum(populated):.2f} s)" if populated else ""),
        flush=True,
    )
    # Page faults of the whole process (every thread): major ones read the base file back
    # from disk, as when the page cache cannot hold the old base, the new one and the build.
    print(
        "page faults, major / minor: during the compaction "
        f"{faults[1].ru_majflt - faults[0].ru_majflt:,} / "
        f"{faults[1].ru_minflt - faults[0].ru_minflt:,}; baseline "
        f"{faults[3].ru_majflt - faults[2].ru_majflt:,} / "
        f"{faults[3].ru_minflt - faults[2].ru_minflt:,}",
        flush=True,
    )
    # The slowest queries during the compaction, by when they started: a stall at one step of
    # the build (its start, the swap, the release of the old base at the end) shows as a run.
    lo = window["start"]
    slow = sorted(((s, t - lo) for t, s in during[0] if lo <= t < window["end"]), reverse=True)
    print(
        "slowest queries during it (ms at s): "
        + ", ".join(f"{s * 1e3:.0f} at {at:.1f}" for s, at in sorted(slow[:8], key=lambda x: x[1])),
        flush=True,
    )
    print_table(STALL_ROWS[-2:])
    remove_base(path)  # the index goes with this call (its mapping stays valid until then)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="100000,1000000,10000000",
        help="comma-separated; 10M needs about 2 GB and a minute",
    )
    parser.add_argument("--queries", type=int, default=1000)
    # Data shaped like real hashes (bench/pdq_datasets.py): near-copy families, correlated bits,
    # with FAISS IndexBinaryMultiHash as a further baseline.
    parser.add_argument("--datasets", action="store_true", help="also run bench/pdq_datasets.py")
    parser.add_argument("--dataset-size", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--base-dir",
        default="data/bench-pdq",
        help="where the index base files go (removed afterwards); '' keeps them in memory",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per method")
    parser.add_argument("--reuse-base", action="store_true", help="map a base file left before")
    parser.add_argument("--skip-updates", action="store_true", help="skip the updates section")
    parser.add_argument("--keep-base", action="store_true", help="leave the base files in place")
    parser.add_argument(
        "--workers", type=int, default=0, help="worker processes that query each base file together"
    )
    parser.add_argument(
        "--worker-seconds", type=float, default=20.0, help="how long the workers query"
    )
    parser.add_argument(
        "--layouts",
        default="multi-index,compact",
        help="PDQIndex layouts to run (SIGNET_PDQ_LAYOUT values), comma-separated",
    )
    parser.add_argument(
        "--compaction-stall",
        action="store_true",
        help="only time single queries and writes during a background compaction, and without",
    )
    parser.add_argument("--stall-write-rate", type=float, default=100.0, help="writes per second")
    args = parser.parse_args()
    layouts = tuple(x for x in args.layouts.split(",") if x)
    global REUSE, SKIP_UPDATES, REPEAT, KEEP, WORKERS, WORKER_SECONDS, STALL_WRITE_RATE
    REUSE, SKIP_UPDATES, REPEAT = args.reuse_base, args.skip_updates, args.repeat
    KEEP, WORKERS, WORKER_SECONDS = args.keep_base, args.workers, args.worker_seconds
    STALL_WRITE_RATE = args.stall_write_rate
    base_dir = Path(args.base_dir) if args.base_dir else None
    if base_dir is not None:
        base_dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]

    extra = {
        "faiss": faiss.__version__ if faiss is not None else "not installed",
        "threshold": str(THRESHOLD),
    }
    print(machine_info(extra))
    bandwidth = read_bandwidth()
    print(f"read bandwidth, one core: {bandwidth / 1e9:.1f} GB/s\n")
    if args.compaction_stall:
        for n in sizes:
            for layout in layouts:
                run_stall(n, layout, args.seed, base_dir or Path("data/bench-pdq"))
        print("\n## Single queries and writes during a background compaction, and without\n")
        print_table(STALL_ROWS)
        return
    results: list[dict[str, str]] = []
    updates: list[dict[str, str]] = []
    for n in sizes:
        r, u = run_size(n, args.queries, bandwidth, args.seed, base_dir, layouts)
        if base_dir is not None and not args.keep_base:
            for f in base_dir.glob(f"bench-{n}-*.pdqbase*"):
                f.unlink()
        results += r
        updates += u
        gc.collect()
        print_table(r)
        print(flush=True)
    print("## PDQ range search, t <= 31, one core\n")
    print_table(results)
    print("\n## Updates\n")
    print_table(updates)
    print("\n## Memory per host (base file shared by the workers)\n")
    print_table(MEMORY)
    if WORKER_ROWS:
        print(f"\n## Worker processes on the base file: one alone, then {WORKERS} together\n")
        print_table(WORKER_ROWS)
    if base_dir is not None and not any(base_dir.iterdir()):
        shutil.rmtree(base_dir, ignore_errors=True)
    if args.datasets:
        from pdq_datasets import run_all

        print(f"\n## Data sets beyond uniform codes ({args.dataset_size:,} codes)\n")
        print_table(run_all(args.dataset_size, 300, args.seed))


if __name__ == "__main__":
    main()
