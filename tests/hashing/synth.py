"""Synthetic test images: deterministic per seed, varied enough that unrelated seeds give
unrelated PDQ hashes (about 128 bits apart) and good PDQ quality."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter


def make_image(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A gradient background, a dozen random shapes and a little noise."""
    rng = random.Random(seed)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    a, b = np.array([rng.random() for _ in range(3)]), np.array([rng.random() for _ in range(3)])
    base = (x * a + y * b) * 200
    img = Image.fromarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(20, w // 2), y0 + rng.randrange(20, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice(("rect", "ellipse", "poly"))
        if shape == "rect":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            pts = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randrange(3, 6))]
            draw.polygon(pts, fill=colour)
    # Soft edges, like a photo's: hard polygon edges alias when resized.
    img = img.filter(ImageFilter.GaussianBlur(2))
    noise = np.random.default_rng(seed).normal(0, 2, (h, w, 3))
    arr = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def jpeg(img: Image.Image, quality: int = 90) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def resized(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.LANCZOS)


def cropped(img: Image.Image, fraction: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * fraction), round(h * fraction)
    return img.crop((dx, dy, w - dx, h - dy))


def brighter(img: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(factor)


ALTERATIONS = {
    "resize75": lambda im: resized(im, 0.75),
    "jpeg70": lambda im: jpeg(im, 70),
    "crop1": lambda im: cropped(im, 0.01),
    "bright110": lambda im: brighter(im, 1.1),
}


def write_set(directory: Path, seeds: range, *, alter: str | None = None) -> list[Path]:
    """Write one image per seed (PNG originals; JPEG q=85 for altered copies)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        img = make_image(seed)
        if alter is None:
            p = directory / f"img-{seed:03d}.png"
            img.save(p)
        else:
            p = directory / f"img-{seed:03d}-{alter}.jpg"
            ALTERATIONS[alter](img).save(p, "JPEG", quality=85)
        paths.append(p)
    return paths
