"""What a PDQ index of at most 1.5x the raw codes would cost in recall (an experiment, issue 15).

    .venv/bin/python bench/pdq_compact.py [--size 10000000] [--queries 300]

The exact index (`PDQIndex`: 16 chunks of 16 bits, each with a position list of uint32) needs
the 16 lists to find every code within t = 31 by pigeonhole: 64 B of positions per 32 B code.
docs/scaling.md ("Why not 1.5x the raw codes") explains why no exact layout we costed gets to
1.5x. This measures the other way there: keep the position lists of only k of the 16 chunks
(memory 32 + 4k bytes per code: k = 4 is exactly 1.5x) and probe each kept chunk to a radius
r > 1, which finds a near copy only when one kept chunk differs in at most r bits. That is no
longer guaranteed, so recall is measured, per distance, against the exact index (itself
checked against a brute-force scan on a sample) at realistic near-copy distances 0..31.
Queries/s beside the exact PDQIndex and FAISS IndexBinaryFlat, all on one core, same run.

Data: uniform random codes (the least favourable case for chunk-based indexes is skewed data;
see bench/pdq_datasets.py), queries are stored codes with d random bits flipped, d spread evenly
over 0..31.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import machine_info, pin_one_core, print_table

pin_one_core()

import numpy as np  # noqa: E402

from app.signals.pdq_index import PDQIndex, scan_codes  # noqa: E402

try:
    import faiss  # type: ignore[import-untyped]

    faiss.omp_set_num_threads(1)
except ImportError:  # FAISS is an optional baseline
    faiss = None

T = 31
_POP16 = np.bitwise_count(np.arange(1 << 16, dtype=np.uint16))
_MASKS = np.argsort(_POP16, kind="stable").astype(np.int64)  # 16-bit masks by weight
_BALL = np.cumsum(np.bincount(_POP16, minlength=17))


class ChunkSubsetIndex:
    """Position lists for `chunks` only (CSR per chunk, uint32 positions), probed to `radius`."""

    def __init__(self, codes: np.ndarray, chunks: list[int], radius: int) -> None:
        self.codes = codes.view(np.uint64).reshape(-1, 4)
        halves = codes.view(np.uint16).reshape(-1, 16)
        self.chunks = chunks
        self.masks = _MASKS[: int(_BALL[radius])]
        self.candidates = 0  # rows verified so far, over all queries
        self.positions = []
        self.offsets = []
        for c in chunks:
            values = halves[:, c]
            self.positions.append(np.argsort(values, kind="stable").astype(np.uint32))
            counts = np.bincount(values, minlength=1 << 16)
            # uint32 offsets: n < 2**32 here, so 256 KiB per chunk.
            self.offsets.append(np.concatenate(([0], np.cumsum(counts))).astype(np.uint32))

    def bytes_per_code(self) -> float:
        n = self.codes.shape[0]
        extra = sum(p.nbytes + o.nbytes for p, o in zip(self.positions, self.offsets, strict=True))
        return 32 + extra / n

    def query(self, code: np.ndarray) -> set[int]:
        halves = code.view(np.uint16)
        parts = []
        for c, pos, off in zip(self.chunks, self.positions, self.offsets, strict=True):
            slots = int(halves[c]) ^ self.masks
            starts = off[slots].astype(np.int64)
            ends = off[slots + 1].astype(np.int64)
            lengths = ends - starts
            total = int(lengths.sum())
            if total == 0:
                continue
            run_end = np.cumsum(lengths)
            shift = np.repeat(starts - (run_end - lengths), lengths)
            idx = np.arange(total, dtype=np.int64) + shift
            parts.append(pos[idx])
        if not parts:
            return set()
        # Verify every candidate (a code found through two chunks is checked twice: cheaper than
        # deduplicating all of them first), then keep each hit once.
        cand = np.concatenate(parts)
        self.candidates += cand.size
        words = code.view(np.uint64)
        dist = np.bitwise_count(self.codes.take(cand, axis=0) ^ words).sum(axis=1)
        return set(cand[dist <= T].tolist())


def miss_probability(k: int, r: int, d: int) -> float:
    """Exact chance that a code d bits away (bits flipped uniformly at random) is missed: every
    one of the k kept 16-bit chunks has more than r of the flipped bits."""
    from math import comb

    ways = [1] + [0] * d  # ways[s]: flips placed in the chunks so far, s of them, each > r
    for _ in range(k):
        nxt = [0] * (d + 1)
        for s0, w in enumerate(ways):
            if w:
                for x in range(r + 1, min(16, d - s0) + 1):
                    nxt[s0 + x] += w * comb(16, x)
        ways = nxt
    rest = 256 - 16 * k
    missed = sum(w * comb(rest, d - s0) for s0, w in enumerate(ways) if w)
    return missed / comb(256, d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=320)
    ap.add_argument(
        "--layouts",
        default="4:2,4:3,6:2",
        help="chunks kept:probe radius, comma separated (4 chunks = 1.5x the raw codes)",
    )
    args = ap.parse_args()
    print(machine_info({"codes": f"{args.size:,}", "queries": str(args.queries)}))
    rng = np.random.default_rng(15)
    n = args.size
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    # Near copies of stored codes, d bits flipped, d = 0..31 evenly.
    dists = np.arange(args.queries) % (T + 1)
    targets = rng.integers(0, n, args.queries)
    queries = codes[targets].copy()
    for i, d in enumerate(dists):
        bits = np.unpackbits(queries[i])
        bits[rng.choice(256, size=int(d), replace=False)] ^= 1
        queries[i] = np.packbits(bits)

    t0 = time.perf_counter()
    exact = PDQIndex.from_arrays(np.arange(n, dtype=np.int64), codes)
    print(f"exact index built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    t0 = time.perf_counter()
    truth = [{k for k, _ in exact.query(q.tobytes(), T)} for q in queries]
    exact_qps = len(queries) / (time.perf_counter() - t0)
    # The exact index against a brute-force scan on a sample (it is exact by construction).
    for i in range(0, len(queries), max(1, len(queries) // 8)):
        brute = {row for row, _ in scan_codes(codes, queries[i].tobytes(), T)}
        assert brute == truth[i], "exact index disagrees with brute force"
    exact_mem = exact.memory_bytes() / n
    rows = [
        {
            "index": "PDQIndex (exact, 16 chunks, r = 1)",
            "bytes per code": f"{exact_mem:.0f}",
            "x raw": f"{exact_mem / 32:.2f}",
            "queries/s": f"{exact_qps:,.0f}",
            # 16 chunks x 17 buckets (radius 1) of n / 65,536 codes each, on uniform data.
            "rows verified per query": f"~{16 * 17 * n / 65536:,.0f}",
            "recall d<=15": "100%",
            "recall d=16..23": "100%",
            "recall d=24..31": "100%",
            "worst d": "-",
        }
    ]
    if faiss is not None:
        flat = faiss.IndexBinaryFlat(256)
        flat.add(codes)
        sample = queries[:20]
        t0 = time.perf_counter()
        for q in sample:
            flat.range_search(q.reshape(1, 32), T + 1)
        rows.append(
            {
                "index": "FAISS IndexBinaryFlat (scan)",
                "bytes per code": "32",
                "x raw": "1.00",
                "queries/s": f"{len(sample) / (time.perf_counter() - t0):,.1f}",
                "rows verified per query": f"{n:,}",
                "recall d<=15": "100%",
                "recall d=16..23": "100%",
                "recall d=24..31": "100%",
                "worst d": "-",
            }
        )
        del flat
    for layout in args.layouts.split(","):
        k, r = (int(x) for x in layout.split(":"))
        chunks = [round(i * 16 / k) for i in range(k)]  # spread over the code
        t0 = time.perf_counter()
        idx = ChunkSubsetIndex(codes, chunks, r)
        print(f"{k} chunks r={r} built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        t0 = time.perf_counter()
        found = [idx.query(q) for q in queries]
        qps = len(queries) / (time.perf_counter() - t0)
        hit = np.array([len(f & t) for f, t in zip(found, truth, strict=True)])
        want = np.array([len(t) for t in truth])

        def recall(lo: int, hi: int, hit: np.ndarray = hit, want: np.ndarray = want) -> str:
            sel = (dists >= lo) & (dists <= hi)
            return f"{hit[sel].sum() / max(want[sel].sum(), 1):.2%}"

        missed = sorted({int(d) for d, h, w in zip(dists, hit, want, strict=True) if h < w})
        rows.append(
            {
                "index": f"{k} chunks kept, r = {r}",
                "bytes per code": f"{idx.bytes_per_code():.0f}",
                "x raw": f"{idx.bytes_per_code() / 32:.2f}",
                "queries/s": f"{qps:,.0f}",
                "rows verified per query": f"{idx.candidates / len(queries):,.0f}",
                "recall d<=15": recall(0, 15),
                "recall d=16..23": recall(16, 23),
                "recall d=24..31": recall(24, 31),
                "worst d": f"misses at d = {missed}" if missed else "no miss",
                "exact miss chance d=24 / 31": (
                    f"{miss_probability(k, r, 24):.2e} / {miss_probability(k, r, 31):.2e}"
                ),
            }
        )
        print(rows[-1], file=sys.stderr)
        del idx
    print_table(rows)


if __name__ == "__main__":
    main()
