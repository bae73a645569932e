"""Client-side vPDQ: the PDQ hash, quality and time of a video's frames, one per `1/fps` seconds.

Runs where the video is (`signet hash`, or `vpdq_of_video` from Python); only the resulting
text (frame number, quality, PDQ hex, seconds per line) may be sent to a node.

Decoding is PyAV (bindings to FFmpeg, which its wheels ship), behind the `media` extra; frames
are converted to RGB24 at full size and hashed with `pdqhash`, as Meta's vPDQ does (no
down-sampling by default). Frame selection: the first frame at or after each multiple of
`1/fps` seconds of presentation time, so a 30 fps video at `fps=1` gives frames 0, 30, 60, ...
like vPDQ's `secondsPerHash=1`; `fps=None` hashes every frame (how Meta's published sample
hashes were made). Frame numbers count decoded frames from 0.

Bars: PDQ sees a whole frame, so a copy with black or grey bars added (letterbox/pillarbox)
is 60-70 bits away from the original, beyond any threshold (Meta's pattern samples). By default
uniform borders are cropped before hashing (`crop_bars`); on a frame without bars nothing
changes, so such frames hash exactly as Meta's vPDQ does. `crop=False` (`--no-crop-bars`)
gives Meta's hashes for barred videos too.

Measured against Meta's published hashes of its five sample videos (bench/vpdq.py): see
docs/signal-types.md for the distance per frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.errors import SignetError
from app.signals.types.video import VpdqFrame

__all__ = ["VIDEO_EXTENSIONS", "VideoDecodeError", "crop_bars", "vpdq_of_video"]

# Containers FFmpeg reads that platforms commonly receive; matched on the file name's ending.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".3gp",
     ".ts", ".ogv"}
)  # fmt: skip

Progress = Callable[[float, float], None]  # (seconds hashed so far, duration or 0 if unknown)


class VideoDecodeError(SignetError):
    """The file could not be opened or decoded as a video."""


_BAR_RANGE = 24  # a border row/column whose luma spans less than this is a bar, not picture


def crop_bars(rgb: Any) -> Any:
    """`rgb` (h, w, 3) without uniform borders (letterbox, pillarbox, grey or black bars), at
    most a third of each dimension from each side. A frame without bars is returned whole."""
    import numpy as np

    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    h, w = luma.shape
    rows = luma.max(axis=1) - luma.min(axis=1)
    cols = luma.max(axis=0) - luma.min(axis=0)

    def run(spans: Any, limit: int) -> int:
        flat = spans[:limit] >= _BAR_RANGE
        return int(flat.argmax()) if flat.any() else limit

    top, bottom = run(rows, h // 3), run(rows[::-1], h // 3)
    left, right = run(cols, w // 3), run(cols[::-1], w // 3)
    return rgb[top : h - bottom, left : w - right]


def _pdq(frame: Any, crop: bool) -> tuple[str, int]:
    import numpy as np
    import pdqhash

    rgb = frame.to_ndarray(format="rgb24")
    bits, quality = pdqhash.compute(crop_bars(rgb) if crop else rgb)
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def vpdq_of_video(
    path: str | Path,
    *,
    fps: float | None = 1.0,
    crop: bool = True,
    progress: Progress | None = None,
) -> list[VpdqFrame]:
    """The vPDQ frames of the video at `path`; raises VideoDecodeError.

    `crop`: cut uniform bars off each frame first (see the module docstring)."""
    import av

    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError("fps must be a positive number, or None for every frame")
    interval = 0.0 if fps is None else 1.0 / fps
    frames: list[VpdqFrame] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg's own decoder threads
            duration = 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            rate = float(stream.average_rate) if stream.average_rate else 0.0
            next_t = 0.0
            for n, frame in enumerate(container.decode(stream)):
                t = frame.time
                if t is None:  # no timestamps: fall back on the nominal frame rate
                    t = n / rate if rate else float(n)
                t = max(t, 0.0)
                # A tiny slack: timestamps in time-base units rarely land exactly on k/fps.
                if interval and t + 1e-6 < next_t:
                    continue
                while interval and next_t <= t + 1e-6:
                    next_t += interval
                pdq, quality = _pdq(frame, crop)
                frames.append(VpdqFrame(n, quality, pdq, round(t, 3)))
                if progress is not None:
                    progress(t, duration)
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(f"{path}: not a decodable video: {exc}") from None
    if not frames:
        raise VideoDecodeError(f"{path}: no frames decoded")
    return frames
