"""Synthetic test videos, encoded with PyAV: a slow pan over a synthetic image, so successive
frames are near copies (as in real footage) and unrelated seeds give unrelated frames."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

from tests.hashing.synth import make_image


def make_video(
    path: Path,
    seed: int,
    *,
    seconds: int = 4,
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    bars: int = 0,
    grey: bool = False,
    scale: float = 1.0,
) -> Path:
    """Write an MPEG-4 video; `bars` adds black pillarbox bars of that width, `grey` drops the
    colour, `scale` changes the resolution: the variants a re-upload shows."""
    w, h = size
    scene = make_image(seed, (w * 2, h))
    out_w, out_h = int(w * scale) // 2 * 2, int(h * scale) // 2 * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = out_w + 2 * bars, out_h
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        n = seconds * fps
        for i in range(n):
            x = int(i * w / n)  # pans across the scene over the video's length
            img = scene.crop((x, 0, x + w, h)).resize((out_w, out_h))
            if grey:
                img = ImageOps.grayscale(img).convert("RGB")
            if bars:
                canvas = Image.new("RGB", (out_w + 2 * bars, out_h))
                canvas.paste(img, (bars, 0))
                img = canvas
            frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
