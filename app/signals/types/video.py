"""Video: `vpdq`, the frame PDQ hashes of a video in Meta's vPDQ text form.

Value: one line per hashed frame, `frame_number,quality,pdq_hex,seconds`, exactly as Meta's vPDQ
publishes its sample hashes (`0,100,e271...055c,0.000`). Canonical form: lines sorted by frame
number, frame numbers unique, quality 0-100, the hash 64 lowercase hex, seconds >= 0 with three
decimals, joined by `\\n` with no trailing newline. `\\r\\n`, surrounding blanks and an empty last
line are accepted. 1 to `MAX_FRAMES` frames; at least one of quality >= 50 unless low quality is
allowed (a video of flat frames matches noise).

Matching as vPDQ defines it (`vpdq_match`): drop frames of quality below `QUALITY_MIN` on both
sides, keep one of each distinct hash, then a query frame *matches* if some compared frame is
within `distance` bits. `query_percent` = matched distinct query hashes / distinct query hashes,
`compared_percent` = matched distinct compared hashes / distinct compared hashes, both 0-100;
a video matches when both reach their thresholds (defaults as python-threatexchange's vPDQ
signal: 80 % of the query, 0 % of the compared video, distance <= 31). The node looks stored
frames up through its PDQ index; `vpdq_match` is the reference it is tested against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from app.errors import InvalidSignal
from app.signals.types.base import Canonical, require_str
from app.signals.vocab import SignalType

__all__ = [
    "DEFAULT_COMPARED_PERCENT",
    "DEFAULT_QUERY_PERCENT",
    "MAX_FRAMES",
    "QUALITY_MIN",
    "VpdqFrame",
    "VpdqMatch",
    "canonical_vpdq",
    "format_vpdq",
    "frame_ranges",
    "parse_vpdq",
    "usable_frames",
    "vpdq_match",
]

MAX_FRAMES: Final = 10_000  # 2 h 46 min at one frame per second; about 850 kB of text
QUALITY_MIN: Final = 50
DEFAULT_QUERY_PERCENT: Final = 80.0
DEFAULT_COMPARED_PERCENT: Final = 0.0
_MAX_CHARS: Final = MAX_FRAMES * 100
_LINE = re.compile(r"(\d{1,9}),(\d{1,3}),([0-9a-fA-F]{64}),(\d{1,7}(?:\.\d{1,9})?)")


@dataclass(frozen=True, slots=True)
class VpdqFrame:
    frame: int
    quality: int
    pdq: str  # 64 lowercase hex
    seconds: float

    def line(self) -> str:
        return f"{self.frame},{self.quality},{self.pdq},{self.seconds:.3f}"


def format_vpdq(frames: Iterable[VpdqFrame]) -> str:
    """The canonical text of `frames` (sorted by frame number)."""
    return "\n".join(f.line() for f in sorted(frames, key=lambda f: f.frame))


def parse_vpdq(value: object, field: str = "value") -> list[VpdqFrame]:
    """The frames of a vPDQ text, sorted by frame number; raises InvalidSignal naming the line."""
    s = require_str(value, field, max_len=_MAX_CHARS)
    lines = [ln.strip() for ln in s.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise InvalidSignal(field, "a vPDQ hash needs at least one frame line")
    if len(lines) > MAX_FRAMES:
        raise InvalidSignal(field, f"{len(lines)} frames; at most {MAX_FRAMES} (hash at 1 fps)")
    frames: dict[int, VpdqFrame] = {}
    for n, ln in enumerate(lines, 1):
        m = _LINE.fullmatch(ln)
        if m is None:
            raise InvalidSignal(
                field,
                f"line {n}: expected 'frame,quality,pdq_hex,seconds' "
                "(e.g. 0,100,<64 hex>,0.000), as Meta's vPDQ writes it",
            )
        frame, quality = int(m.group(1)), int(m.group(2))
        if quality > 100:
            raise InvalidSignal(field, f"line {n}: quality must be 0-100, got {quality}")
        if frame in frames:
            raise InvalidSignal(field, f"line {n}: frame {frame} appears twice")
        # Rounded to the canonical three decimals, so parse(format(x)) == x.
        seconds = round(float(m.group(4)), 3)
        frames[frame] = VpdqFrame(frame, quality, m.group(3).lower(), seconds)
    return [frames[k] for k in sorted(frames)]


def canonical_vpdq(value: object, *, allow_low_quality: bool = False) -> Canonical:
    frames = parse_vpdq(value)
    if not allow_low_quality and not any(f.quality >= QUALITY_MIN for f in frames):
        raise InvalidSignal(
            "value",
            f"no frame has quality >= {QUALITY_MIN}: flat or blank frames match unrelated "
            "videos; hash a better copy, or enable low-quality PDQ on this node",
        )
    return Canonical(SignalType.VPDQ, format_vpdq(frames))


def usable_frames(frames: Sequence[VpdqFrame], quality_min: int = QUALITY_MIN) -> list[VpdqFrame]:
    """The frames vPDQ compares: quality at least `quality_min`, in frame order."""
    return [f for f in frames if f.quality >= quality_min]


def frame_ranges(frames: Sequence[VpdqFrame], matched: set[str]) -> list[tuple[float, float]]:
    """Maximal runs of consecutive usable frames whose hash is in `matched`, as
    (first seconds, last seconds)."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for f in frames:
        if f.pdq in matched:
            if start is None:
                start = f.seconds
            last = f.seconds
        elif start is not None:
            out.append((start, last))
            start = None
    if start is not None:
        out.append((start, last))
    return out


@dataclass(frozen=True)
class VpdqMatch:
    query_percent: float
    compared_percent: float
    min_distance: int
    query_ranges: list[tuple[float, float]]
    compared_ranges: list[tuple[float, float]]


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def vpdq_match(
    query: Sequence[VpdqFrame],
    compared: Sequence[VpdqFrame],
    distance: int = 31,
    quality_min: int = QUALITY_MIN,
) -> VpdqMatch:
    """vPDQ's brute-force comparison of two videos (the reference; O(|query| x |compared|))."""
    q = usable_frames(query, quality_min)
    c = usable_frames(compared, quality_min)
    qh, ch = sorted({f.pdq for f in q}), sorted({f.pdq for f in c})
    q_hit: set[str] = set()
    c_hit: set[str] = set()
    best = 257
    for a in qh:
        for b in ch:
            d = _distance(a, b)
            if d <= distance:
                q_hit.add(a)
                c_hit.add(b)
                best = min(best, d)
    return VpdqMatch(
        query_percent=100.0 * len(q_hit) / len(qh) if qh else 0.0,
        compared_percent=100.0 * len(c_hit) / len(ch) if ch else 0.0,
        min_distance=best,
        query_ranges=frame_ranges(q, q_hit),
        compared_ranges=frame_ranges(c, c_hit),
    )
