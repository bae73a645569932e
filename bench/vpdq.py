"""vPDQ: video matching speed through the frame PDQ index against a linear scan, and (with
--reference) our hasher against Meta's published hashes of its sample videos.

    .venv/bin/python bench/vpdq.py [--videos 1000,10000] [--frames 60] [--queries 20]
    .venv/bin/python bench/vpdq.py --reference ../shared/vectors/vpdq   # slow: every frame

Speed data: `videos` stored videos of `frames` frames each (1 fps), each frame a near copy
(0-12 bits) of one of a few scene codes of its video, as real footage gives. Queries are
re-encodes of stored videos (frames 0-20 bits from the originals) and unrelated videos.
Baseline measured in the same run: a linear scan over every stored frame (numpy bitwise_count
over all frames for each query frame, then vPDQ's percentages per video), which is what vPDQ's
brute-force matcher does. Both answers are compared, so the speed-up is never bought with recall.

Reference (needs the shared sample videos, not shipped in the repository): every frame hashed
with `--no-crop-bars` against Meta's published hashes (distance per frame of published quality
>= 50), and the variant matrix: stored = every frame (crop on), query = 1 fps (crop on).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import best_time, fmt_rate, machine_info, pin_one_core, print_table

pin_one_core()

import numpy as np  # noqa: E402

from app.signals.match_index import IndexedSignal, MatchIndex  # noqa: E402
from app.signals.types.video import (  # noqa: E402
    VpdqFrame,
    format_vpdq,
    parse_vpdq,
    usable_frames,
    vpdq_match,
)

THRESHOLD = 31


def _flip(code: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    b = np.unpackbits(code)
    b[rng.choice(256, size=bits, replace=False)] ^= 1
    return np.packbits(b)


def _video(scenes: np.ndarray, frames: int, noise: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.sort(rng.integers(0, len(scenes), size=frames))  # scenes follow one another
    return np.stack([_flip(scenes[i], int(rng.integers(0, noise + 1)), rng) for i in idx])


def _frames(codes: np.ndarray) -> list[VpdqFrame]:
    return [VpdqFrame(i, 100, c.tobytes().hex(), float(i)) for i, c in enumerate(codes)]


class LinearScan:
    """Every stored frame in one array; each query frame compared against all of them."""

    def __init__(self, videos: list[np.ndarray]) -> None:
        self.codes = np.concatenate(videos).view(np.uint64).reshape(-1, 4)
        self.owner = np.concatenate([np.full(len(v), i) for i, v in enumerate(videos)])
        self.distinct = [len({c.tobytes() for c in v}) for v in videos]
        self.hashes = np.concatenate(videos)

    def match(self, query: np.ndarray) -> dict[int, tuple[float, float]]:
        q = np.unique(query, axis=0)
        q_hit: dict[int, set[int]] = {}
        c_hit: dict[int, set[bytes]] = {}
        for i, code in enumerate(q.view(np.uint64).reshape(-1, 4)):
            d = np.bitwise_count(self.codes ^ code).sum(axis=1)
            for row in np.nonzero(d <= THRESHOLD)[0]:
                v = int(self.owner[row])
                q_hit.setdefault(v, set()).add(i)
                c_hit.setdefault(v, set()).add(self.hashes[row].tobytes())
        return {
            v: (100 * len(q_hit[v]) / len(q), 100 * len(c_hit[v]) / self.distinct[v]) for v in q_hit
        }


def speed(n_videos: int, frames: int, queries: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    videos = [
        _video(rng.integers(0, 256, size=(4, 32), dtype=np.uint8), frames, 12, rng)
        for _ in range(n_videos)
    ]
    index = MatchIndex()
    t0 = time.perf_counter()
    index.load(
        [
            IndexedSignal(i + 1, "vpdq", f"vpdq:{i}", format_vpdq(_frames(v)), 2e9, True)
            for i, v in enumerate(videos)
        ]
    )
    build = time.perf_counter() - t0
    scan = LinearScan(videos)
    picks = rng.choice(n_videos, size=queries // 2, replace=False)
    qs = [np.stack([_flip(c, int(rng.integers(0, 21)), rng) for c in videos[p]]) for p in picks]
    qs += [
        _video(rng.integers(0, 256, size=(4, 32), dtype=np.uint8), frames, 12, rng)
        for _ in range(queries - len(qs))
    ]
    q_frames = [_frames(q) for q in qs]

    got: list[dict[int, tuple[float, float]]] = []
    want: list[dict[int, tuple[float, float]]] = []

    def run_index() -> None:
        got[:] = [
            {r - 1: (m.query_percent, m.compared_percent) for r, m in index.vpdq(f, THRESHOLD, 1)}
            for f in q_frames
        ]

    def run_scan() -> None:
        want[:] = [scan.match(q) for q in qs]

    t_index = best_time(run_index, repeat=3) / queries
    t_scan = best_time(run_scan, repeat=1) / queries
    same = all(
        g.keys() == w.keys() and all(np.allclose(g[k], w[k]) for k in g)
        for g, w in zip(got, want, strict=True)
    )
    found = sum(int(p) in g for p, g in zip(picks, got, strict=False))
    note = f"{n_videos * frames:,} frames; index built in {build:.1f} s"
    return [
        {
            "videos x frames": f"{n_videos:,} x {frames}",
            "method": "linear scan (numpy, every stored frame)",
            "videos/s": fmt_rate(1 / t_scan),
            "ms/video": f"{1e3 * t_scan:.3g}",
            "same answers": "",
            "notes": "baseline",
        },
        {
            "videos x frames": f"{n_videos:,} x {frames}",
            "method": "MatchIndex.vpdq (frame PDQ index)",
            "videos/s": fmt_rate(1 / t_index),
            "ms/video": f"{1e3 * t_index:.3g}",
            "same answers": "yes" if same else "NO",
            "notes": f"{t_scan / t_index:.1f}x; re-encodes found {found}/{len(picks)}; {note}",
        },
    ]


def reference(folder: Path) -> None:
    from app.videohash import vpdq_of_video

    names = sorted(p.name.removesuffix(".mp4") for p in folder.glob("*.mp4"))
    rows = []
    for name in names:
        t0 = time.perf_counter()
        ours = {f.frame: f for f in vpdq_of_video(folder / f"{name}.mp4", fps=None, crop=False)}
        took = time.perf_counter() - t0
        pub = parse_vpdq((folder / f"{name}.vpdq.txt").read_text())
        d = np.array(
            [
                (int(ours[p.frame].pdq, 16) ^ int(p.pdq, 16)).bit_count()
                for p in usable_frames(pub)
                if p.frame in ours
            ]
        )
        qd = max(abs(ours[p.frame].quality - p.quality) for p in pub if p.frame in ours)
        rows.append(
            {
                "video": name,
                "frames ours / Meta": f"{len(ours)} / {len(pub)}",
                "frames quality >= 50": str(len(d)),
                "distance mean": f"{d.mean():.2f}",
                "p99": f"{np.percentile(d, 99):.0f}",
                "max": str(d.max()),
                "quality max diff": str(qd),
                "hash time": f"{took:.0f} s",
            }
        )
    print("\n### Our hashes against Meta's published ones (every frame, --no-crop-bars)\n")
    print_table(rows)
    stored = {n: vpdq_of_video(folder / f"{n}.mp4", fps=None) for n in names}
    query = {n: vpdq_of_video(folder / f"{n}.mp4", fps=1.0) for n in names}
    matrix = []
    for q in names:
        row = {"query (1 fps)": q}
        for s in names:
            m = vpdq_match(query[q], stored[s])
            row[s] = f"{m.query_percent:.0f} / {m.compared_percent:.0f}"
        matrix.append(row)
    print("\n### Variants: query % / compared % (stored every frame, query 1 fps, crop on)\n")
    print_table(matrix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", default="1000,10000")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--reference", type=Path, help="folder with Meta's sample videos + hashes")
    args = ap.parse_args()
    print(machine_info())
    if args.reference:
        reference(args.reference)
        return
    rows: list[dict[str, str]] = []
    for n in (int(x) for x in args.videos.split(",")):
        rows += speed(n, args.frames, args.queries, args.seed)
    print(f"\n### vPDQ matching, t <= {THRESHOLD}, one core\n")
    print_table(rows)


if __name__ == "__main__":
    main()
