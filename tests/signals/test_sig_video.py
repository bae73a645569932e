"""vpdq: Meta's text form, canonical form, and vPDQ matching through the PDQ index."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.errors import InvalidSignal
from app.signals.match_index import IndexedSignal, MatchIndex, match_key
from app.signals.pdq_base import Base
from app.signals.types import canonicalize
from app.signals.types.video import VpdqFrame, format_vpdq, parse_vpdq, vpdq_match

VECTORS = Path(__file__).parent.parent / "vectors" / "vpdq"
NAMES = [
    "chair-19-sd-bar",
    "chair-22-with-small-logo-bar",
    "pattern-hd-no-bar",
    "pattern-sd-grey-bar",
    "doorknob-hd-no-bar",
]


def published(name: str) -> str:
    return (VECTORS / f"{name}.vpdq.txt").read_text()


def every(name: str, frames: int) -> list[VpdqFrame]:
    """Meta's every-frame hashes thinned to one frame in `frames` (30 = 1 fps)."""
    return [f for f in parse_vpdq(published(name)) if f.frame % frames == 0]


@pytest.mark.parametrize("name", NAMES)
def test_published_hashes_are_canonical(name: str) -> None:
    text = published(name)
    canon = canonicalize("vpdq", text, allow_low_quality=True)
    assert canon.value == text.strip()  # Meta's own form is already the canonical one
    assert canonicalize("vpdq", canon.value, allow_low_quality=True).value == canon.value
    shuffled = "\r\n".join(random.Random(1).sample(text.split(), len(text.split()))) + "\n"
    assert canonicalize("vpdq", shuffled, allow_low_quality=True).value == canon.value


H = "ab" * 32


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "at least one frame"),
        (f"0,100,{H}", "line 1"),
        (f"0,100,{H},0.0\n1,101,{H},0.1", "line 2: quality"),
        (f"0,100,{H},0.0\n0,90,{H},0.1", "line 2: frame 0 appears twice"),
        (f"0,100,{H[:-1]}x,0.0", "line 1"),
        (f"0,40,{H},0.0", "no frame has quality >= 50"),
        ("\n".join(f"{i},100,{H},{i}" for i in range(10_001)), "at most 10000"),
    ],
)
def test_refused(bad: str, reason: str) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("vpdq", bad)
    assert exc.value.field == "value" and reason in exc.value.reason


def test_quality_belongs_to_frames() -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("vpdq", f"0,100,{H},0.0", quality=100)
    assert exc.value.field == "quality"
    assert canonicalize("vpdq", f"0,40,{H},0.0", allow_low_quality=True).value.startswith("0,40")


def test_match_key_is_short() -> None:
    key = match_key("vpdq", published("chair-19-sd-bar"))
    assert key.startswith("vpdq:sha256:") and len(key) == len("vpdq:sha256:") + 64


def _flip(h: str, rng: random.Random, bits: int) -> str:
    n = int(h, 16)
    for b in rng.sample(range(256), bits):
        n ^= 1 << b
    return f"{n:064x}"


def _video(rng: random.Random, bases: list[str], n: int, noise: int) -> list[VpdqFrame]:
    return [
        VpdqFrame(i, rng.choice([30, 80, 100]), _flip(rng.choice(bases), rng, noise), i * 1.0)
        for i in range(n)
    ]


def _index(videos: dict[int, list[VpdqFrame]]) -> MatchIndex:
    index = MatchIndex()
    index.load(
        [
            IndexedSignal(row, "vpdq", f"vpdq:{row}", format_vpdq(v), 2e9, True)
            for row, v in videos.items()
        ]
    )
    return index


def test_index_agrees_with_brute_force() -> None:
    rng = random.Random(7)
    scenes = [f"{rng.getrandbits(256):064x}" for _ in range(40)]
    videos = {
        row: _video(rng, rng.sample(scenes, 4), rng.randrange(5, 40), rng.randrange(0, 40))
        for row in range(1, 30)
    }
    index = _index(videos)
    for _ in range(15):
        query = _video(rng, rng.sample(scenes, 3), rng.randrange(3, 30), rng.randrange(0, 30))
        got = {row: m for row, m in index.vpdq(query, 31, 1.0)}
        for row, video in videos.items():
            want = vpdq_match(query, video)
            if want.query_percent == 0:
                assert row not in got
                continue
            assert got[row] == want, row


def test_published_variants_match_each_other_and_not_the_doorknob() -> None:
    """Stored: Meta's every-frame hashes. Queries: the same thinned to one frame a second."""
    index = _index({i: parse_vpdq(published(n)) for i, n in enumerate(NAMES)})
    hits = {
        n: {row for row, m in index.vpdq(every(n, 30), 31, 1.0) if m.query_percent >= 80}
        for n in NAMES
    }
    assert hits["chair-19-sd-bar"] == {0, 1}
    assert hits["chair-22-with-small-logo-bar"] == {0, 1}
    assert hits["doorknob-hd-no-bar"] == {4}
    # Meta's uncropped hashes of the pattern pair are 62+ bits apart (bars and aspect change):
    # each matches only itself. Signet's hasher crops bars first (tests/hashing/, bench/vpdq.py).
    assert hits["pattern-hd-no-bar"] == {2}
    assert hits["pattern-sd-grey-bar"] == {3}
    for row, m in index.vpdq(every("chair-22-with-small-logo-bar", 30), 31, 1.0):
        if row == 0:
            assert m.query_ranges and m.compared_ranges
            assert 0 < m.compared_percent < m.query_percent


def test_removed_and_expired_videos_stop_matching() -> None:
    index = _index({1: parse_vpdq(published("doorknob-hd-no-bar"))})
    query = every("doorknob-hd-no-bar", 30)
    assert [r for r, _ in index.vpdq(query, 31, 1.0)] == [1]
    assert index.vpdq(query, 31, 3e9) == []  # past valid_until
    index.apply([IndexedSignal(1, "vpdq", "vpdq:1", "", 2e9, False)])
    assert index.vpdq(query, 31, 1.0) == []
    assert index.stats()["vpdq_frames"] == 0


@pytest.mark.parametrize("layout", ["multi-index", "compact"])
def test_workers_share_one_frame_base_file(tmp_path: Path, layout: str) -> None:
    """With a shared base, the video frame index is one file every worker maps (as the PDQ
    index is), each worker's later changes private until a new base is written: two
    MatchIndex objects on the same files stand for two workers of one host. In either
    layout (SIGNET_PDQ_LAYOUT): the compact base answers through its scan."""
    rng = random.Random(11)
    scenes = [f"{rng.getrandbits(256):064x}" for _ in range(40)]
    videos = {row: _video(rng, rng.sample(scenes, 4), 30, 4) for row in range(1, 21)}
    signals = [
        IndexedSignal(row, "vpdq", f"vpdq:{row}", format_vpdq(v), 2e9, True, seq=row)
        for row, v in videos.items()
    ]
    paths = (str(tmp_path / "pdq.pdqbase"), str(tmp_path / "vpdq.pdqbase"))
    first = MatchIndex(*paths, pdq_layout=layout)
    second = MatchIndex(*paths, pdq_layout=layout)
    first.load(signals, seq=20)
    base = tmp_path / "vpdq.pdqbase"
    assert Base.open(base).kind == layout and Base.open(base).size > 100
    memory = first.pdq_memory()["vpdq"]
    assert memory["layout"] == layout and memory["shared"] == Base.open(base).shared_bytes()
    written = base.stat().st_mtime_ns, base.stat().st_ino
    second.load(signals, seq=20)  # the same state: the file is reused, not rewritten
    assert (base.stat().st_mtime_ns, base.stat().st_ino) == written
    private = MatchIndex()  # the same videos without a file
    private.load(signals, seq=20)
    frames = private.stats()["vpdq_frames"]
    assert frames > 100
    for index in (first, second):
        assert index.stats()["vpdq_frames"] == frames
        assert str(base) in Path("/proc/self/maps").read_text()

    query = videos[5][:10]
    want = vpdq_match(query, videos[5])
    for index in (first, second):
        assert dict(index.vpdq(query, 31, 1.0))[5] == want
    # One worker retracts video 5 and adds video 99 (log positions 21, 22): it sees both at
    # once; the other sees neither until it follows the log to the same changes.
    new = _video(rng, rng.sample(scenes, 4), 30, 4)
    changes = [
        IndexedSignal(5, "vpdq", "vpdq:5", "", 2e9, False, seq=21),
        IndexedSignal(99, "vpdq", "vpdq:99", format_vpdq(new), 2e9, True, seq=22),
    ]
    first.apply(changes)
    first.caught_up(22)
    assert 5 not in dict(first.vpdq(query, 31, 1.0))
    assert 99 in dict(first.vpdq(new[:10], 31, 1.0))
    assert 5 in dict(second.vpdq(query, 31, 1.0))
    assert 99 not in dict(second.vpdq(new[:10], 31, 1.0))
    second.apply(changes)
    second.caught_up(22)
    assert 5 not in dict(second.vpdq(query, 31, 1.0))
    assert dict(second.vpdq(new[:10], 31, 1.0))[99] == vpdq_match(new[:10], new)
