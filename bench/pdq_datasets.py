"""PDQ range search on data shaped like real image hashes, not only uniform random codes.

    .venv/bin/python bench/pdq_index.py --datasets [--dataset-size 1000000]
    .venv/bin/python bench/pdq_datasets.py [--size 1000000] [--queries 300]

Data sets (all 256-bit, t <= 31):
- `uniform`: independent random bits (what bench/pdq_index.py plants neighbours in);
- `families`: groups of 64 near copies (0-12 bits from a family original), like many re-uploads
  of one image; queries are fresh copies (0-20 bits) of stored originals, so each has dozens of
  true neighbours;
- `correlated`: bits driven by a 16-dimensional latent (sign of a fixed random projection plus
  noise), so bits are strongly correlated and 16-bit chunk values pile into few buckets, as
  natural images give; queries are stored codes 0-31 bits away and fresh codes.

Methods, each answer checked against numpy brute force on a sample of queries (recall must be
100 %): PDQIndex, FAISS IndexBinaryFlat.range_search (radius t + 1, strict), FAISS
IndexBinaryMultiHash (16 tables of 16 bits, nflip 1: exact for t <= 31 by the pigeonhole
principle; python-threatexchange's choice for large sets).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import numpy as np
from common import fmt_rate, machine_info, pin_one_core, print_table

from app.signals.pdq_index import PDQIndex, scan_codes

try:
    import faiss  # type: ignore[import-untyped]

    faiss.omp_set_num_threads(1)
except ImportError:  # FAISS is an optional baseline
    faiss = None

THRESHOLD = 31
CHECK = 20  # queries checked against brute force per data set and method
BUDGET = 4.0  # seconds per method: slow methods answer fewer queries


def _flip(codes: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1)
    for i, c in enumerate(counts):
        bits[i, rng.choice(256, size=int(c), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def uniform(n: int, q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    queries = _flip(codes[rng.choice(n, q)], rng.integers(0, 32, q), rng)
    return codes, queries


def families(n: int, q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    originals = rng.integers(0, 256, size=(n // 64, 32), dtype=np.uint8)
    members = np.repeat(originals, 64, axis=0)
    codes = _flip(members, rng.integers(0, 13, len(members)), rng)
    queries = _flip(originals[rng.choice(len(originals), q)], rng.integers(0, 21, q), rng)
    return codes, queries


def correlated(n: int, q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    proj = rng.normal(size=(16, 256)).astype(np.float32)
    codes = np.empty((n, 32), np.uint8)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        z = rng.normal(size=(m, 16)).astype(np.float32)
        noise = rng.normal(scale=1.0, size=(m, 256)).astype(np.float32)
        codes[start : start + m] = np.packbits((z @ proj + noise) > 0, axis=1)
    near = _flip(codes[rng.choice(n, q // 2)], rng.integers(0, 32, q // 2), rng)
    z = rng.normal(size=(q - q // 2, 16)).astype(np.float32)
    fresh = np.packbits((z @ proj + rng.normal(size=(len(z), 256))) > 0, axis=1)
    return codes, np.concatenate([near, fresh])


DATASETS: dict[str, Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "uniform": uniform,
    "families": families,
    "correlated": correlated,
}


def _timed(fn: Callable[[np.ndarray], list[set[int]]], queries: np.ndarray) -> tuple[float, int]:
    """Queries per second, answering one query at a time until the budget runs out."""
    done = 0
    t0 = time.perf_counter()
    while done < len(queries) and time.perf_counter() - t0 < BUDGET:
        fn(queries[done : done + 1])
        done += 1
    return done / (time.perf_counter() - t0), done


def run_dataset(name: str, n: int, q: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    codes, queries = DATASETS[name](n, q, rng)
    keys = np.arange(len(codes), dtype=np.int64)
    truth = [
        {int(r) for r, _ in scan_codes(codes, queries[i].tobytes(), THRESHOLD)}
        for i in range(CHECK)
    ]
    found = sum(len(t) for t in truth)
    chunks = np.unique(codes[:, :2].view(np.uint16)).size
    rows: list[dict[str, str]] = []

    def add(method: str, build: float, fn: Callable[[np.ndarray], list[set[int]]]) -> None:
        got = fn(queries[:CHECK])
        hit = sum(len(g & t) for g, t in zip(got, truth, strict=True))
        extra = sum(len(g - t) for g, t in zip(got, truth, strict=True))
        rate, done = _timed(fn, queries)
        rows.append(
            {
                "data": name,
                "codes": f"{len(codes):,}",
                "method": method,
                "queries/s": fmt_rate(rate),
                "recall": f"{hit / found:.2%}" if found else "n/a",
                "false hits": str(extra),
                "notes": f"build {build:.1f} s; {done} queries timed",
            }
        )

    def scan(qs: np.ndarray) -> list[set[int]]:
        return [{int(r) for r, _ in scan_codes(codes, c.tobytes(), THRESHOLD)} for c in qs]

    add("numpy brute force", 0.0, scan)
    t0 = time.perf_counter()
    index = PDQIndex.from_arrays(keys, codes)
    build = time.perf_counter() - t0

    def pdq(qs: np.ndarray) -> list[set[int]]:
        return [{k for k, _ in hits} for hits in index.query_many(qs, THRESHOLD)]

    add("PDQIndex", build, pdq)
    # The compact layout (SIGNET_PDQ_LAYOUT=compact): its head-first scan reads a tail only
    # when the head is within t, which correlated or clustered codes are more often.
    t0 = time.perf_counter()
    compact = PDQIndex.from_arrays(keys, codes, layout="compact")
    compact_build = time.perf_counter() - t0

    def pdq_compact(qs: np.ndarray) -> list[set[int]]:
        return [{k for k, _ in hits} for hits in compact.query_many(qs, THRESHOLD)]

    add("PDQIndex, compact", compact_build, pdq_compact)
    if faiss is not None:
        t0 = time.perf_counter()
        flat = faiss.IndexBinaryFlat(256)
        flat.add(codes)
        fb = time.perf_counter() - t0

        def faiss_range(idx: object) -> Callable[[np.ndarray], list[set[int]]]:
            def run(qs: np.ndarray) -> list[set[int]]:
                lims, _d, ids = idx.range_search(qs, THRESHOLD + 1)  # type: ignore[attr-defined]
                return [set(ids[lims[i] : lims[i + 1]].tolist()) for i in range(len(qs))]

            return run

        add("FAISS IndexBinaryFlat", fb, faiss_range(flat))
        del flat
        t0 = time.perf_counter()
        multi = faiss.IndexBinaryMultiHash(256, 16, 16)
        multi.nflip = 1  # some chunk is within floor(31 / 16) = 1 bit: exact for t <= 31
        multi.add(codes)
        mb = time.perf_counter() - t0
        add("FAISS IndexBinaryMultiHash (16x16, nflip 1)", mb, faiss_range(multi))
        del multi
    avg = found / CHECK
    for r in rows:
        r["notes"] += f"; {avg:.1f} true hits/query; {chunks:,} distinct 1st chunks"
    return rows


def run_all(n: int, q: int, seed: int) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for name in DATASETS:
        rows += run_dataset(name, n, q, seed)
    return rows


def main() -> None:
    pin_one_core()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    print(machine_info({"faiss": faiss.__version__ if faiss is not None else "not installed"}))
    print(f"\n### PDQ data sets, t <= {THRESHOLD}, one core\n")
    print_table(run_all(args.size, args.queries, args.seed))


if __name__ == "__main__":
    main()
