"""Client-side media hashing: PDQ (with quality), vPDQ of videos, MD5 and SHA-256 of files.

This runs where the media is (the `signet hash` command); only the hex digests it returns may be
sent to a node. Nothing here opens a network connection.

PDQ comes from `pdqhash` (bindings to Meta's reference C++). Images are decoded with Pillow and
converted to RGB with no EXIF rotation, as ThreatExchange's and HMA's hashers do, so that our
hashes agree with the ones other federation members compute for the same file (checked against
the published reference hashes in tests/vectors/pdq/). `pdqhash`, numpy and Pillow are imported
on first use, so importing this module (and `signet --help`) stays cheap. Videos are hashed by
`app.videohash` (PyAV) into vPDQ text when video extensions are passed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "CHUNK",
    "MEDIA_TYPES",
    "PDQ_MIN_QUALITY",
    "FileHashes",
    "Pipeline",
    "SendOptions",
    "hamming",
    "hash_file",
    "image_extensions",
    "iter_files",
    "pdq_of_image",
    "query_items",
    "signal_items",
]

CHUNK = 1 << 20  # files are streamed through the digests in 1 MiB reads, never loaded whole


@dataclass(frozen=True)
class FileHashes:
    """What `signet hash` prints for one file. `error` is set when a step failed; the digests
    that could be computed are still given (an undecodable image still has an MD5)."""

    path: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    pdq: str | None = None
    quality: int | None = None
    vpdq: str | None = None  # vPDQ text: one `frame,quality,pdq,seconds` line per hashed frame
    frames: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON-lines object: absent values are left out rather than printed as null."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def image_extensions() -> frozenset[str]:
    """File name endings Pillow can decode (".jpg", ".png", ".webp", ...), lower case."""
    from PIL import Image

    return frozenset(ext.lower() for ext in Image.registered_extensions())


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Each path given, and every regular file under each directory given, in sorted order.

    Symbolic links to directories are not followed (no cycles, no escaping the tree); a path
    that does not exist is still yielded so the caller reports it as an error for that path.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield p


def _digests(path: Path) -> tuple[int, str, str]:
    md5 = hashlib.md5(usedforsecurity=False)  # MD5 is a lookup key here, not a security check
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            md5.update(chunk)
            sha.update(chunk)
    return size, md5.hexdigest(), sha.hexdigest()


def pdq_of_image(image: Image) -> tuple[str, int]:
    """The PDQ hash (64 lowercase hex) and quality (0-100) of a decoded image."""
    import numpy as np
    import pdqhash

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    bits, quality = pdqhash.compute(np.asarray(rgb))
    # pdqhash returns 256 bits, most significant first: the reference hex order.
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def _pdq_of_file(path: Path) -> tuple[str, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return pdq_of_image(image)


def hash_file(
    path: Path,
    *,
    extensions: frozenset[str] | None = None,
    video_extensions: frozenset[str] = frozenset(),
    fps: float | None = 1.0,
    crop_bars: bool = True,
    progress: Callable[[float, float], None] | None = None,
) -> FileHashes:
    """Digest one file; PDQ too when its name ends like an image, vPDQ (at `fps` frames per
    second, None: every frame) when it ends like one of `video_extensions`. Never raises for a
    bad file: the problem is returned in `error` so a walk over many files goes on."""
    exts = image_extensions() if extensions is None else extensions
    try:
        size, md5, sha256 = _digests(path)
    except OSError as exc:
        return FileHashes(path=str(path), error=f"unreadable: {exc.strerror or exc}")
    suffix = path.suffix.lower()
    if suffix in video_extensions:
        from app.signals.types.video import format_vpdq
        from app.videohash import vpdq_of_video

        try:
            frames = vpdq_of_video(path, fps=fps, crop=crop_bars, progress=progress)
        except Exception as exc:  # any decoder failure is this file's problem only
            return FileHashes(path=str(path), size=size, md5=md5, sha256=sha256, error=f"{exc}")
        return FileHashes(
            path=str(path),
            size=size,
            md5=md5,
            sha256=sha256,
            vpdq=format_vpdq(frames),
            frames=len(frames),
        )
    if suffix not in exts:
        return FileHashes(path=str(path), size=size, md5=md5, sha256=sha256)
    try:
        pdq, quality = _pdq_of_file(path)
    except Exception as exc:  # any decoder failure is this file's problem only
        return FileHashes(
            path=str(path),
            size=size,
            md5=md5,
            sha256=sha256,
            error=f"not a decodable image: {type(exc).__name__}: {exc}",
        )
    return FileHashes(path=str(path), size=size, md5=md5, sha256=sha256, pdq=pdq, quality=quality)


def hamming(a: str, b: str) -> int:
    """Hamming distance between two PDQ hashes given as 64 hex digits."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


# --- turning hashes into signals and queries (no I/O: the caller sends them) ---------------

MEDIA_TYPES = ("pdq", "vpdq", "md5", "sha256")
PDQ_MIN_QUALITY = 50  # the node refuses lower by default: such hashes match noise


@dataclass(frozen=True)
class SendOptions:
    """What `--submit` / `--match` send for each file."""

    categories: tuple[str, ...] = ()
    types: tuple[str, ...] = MEDIA_TYPES
    threshold: int | None = None
    quality_min: int = PDQ_MIN_QUALITY
    allow_low_quality: bool = False
    signal_fields: tuple[tuple[str, Any], ...] = ()  # opinion, confidence, audience, ...


Item = tuple[str, dict[str, Any]]  # (signal type, request item)


def _items(h: FileHashes, opts: SendOptions) -> tuple[list[Item], dict[str, str]]:
    """The (type, {type, value[, quality]}) pairs worth sending for one file, and a note per
    type that is not sent and why. Only hex digests go in: never a path or a byte of media."""
    items: list[Item] = []
    notes: dict[str, str] = {}
    if h.size == 0:
        return [], {"file": "empty file: nothing to send"}
    for t in opts.types:
        if t == "pdq":
            if h.pdq is None or h.quality is None:
                continue
            if h.quality < opts.quality_min and not opts.allow_low_quality:
                notes["pdq"] = (
                    f"skipped: quality {h.quality} < {opts.quality_min}"
                    " (use --allow-low-quality to send it)"
                )
                continue
            items.append(("pdq", {"type": "pdq", "value": h.pdq, "quality": h.quality}))
        elif t == "vpdq":
            if h.vpdq is None:
                continue
            best = max(int(line.split(",", 2)[1]) for line in h.vpdq.split("\n"))
            if best < opts.quality_min and not opts.allow_low_quality:
                notes["vpdq"] = (
                    f"skipped: no frame of quality >= {opts.quality_min}"
                    " (use --allow-low-quality to send it)"
                )
                continue
            items.append(("vpdq", {"type": "vpdq", "value": h.vpdq}))
        elif t == "md5" and h.md5 is not None:
            items.append(("md5", {"type": "md5", "value": h.md5}))
        elif t == "sha256" and h.sha256 is not None:
            items.append(("sha256", {"type": "sha256", "value": h.sha256}))
    return items, notes


def signal_items(h: FileHashes, opts: SendOptions) -> tuple[list[Item], dict[str, str]]:
    """Signals to publish for one file (see `_items`)."""
    items, notes = _items(h, opts)
    out: list[Item] = []
    for t, item in items:
        sig = {**item, "categories": list(opts.categories), **dict(opts.signal_fields)}
        if t in ("pdq", "vpdq") and opts.allow_low_quality:
            sig["allow_low_quality"] = True
        out.append((t, sig))
    return out, notes


def query_items(h: FileHashes, opts: SendOptions) -> tuple[list[Item], dict[str, str]]:
    """Match queries for one file (see `_items`); pdq carries the threshold if one was set."""
    items, notes = _items(h, opts)
    out: list[Item] = []
    for t, item in items:
        q = {"type": item["type"], "value": item["value"]}
        if t in ("pdq", "vpdq") and opts.threshold is not None:
            q["threshold"] = opts.threshold
        out.append((t, q))
    return out, notes


Sender = Callable[[list[dict[str, Any]]], dict[str, Any]]


class Pipeline:
    """Buffers hashed files until a request would hold `batch` items, then sends one submit
    and/or one match request for the whole buffer and returns the files' output lines.

    `submit` / `match` are the node client's methods (or None): this class does no I/O itself.
    A refused batch (the node's error) is reported on every line of that batch, and the walk
    goes on.
    """

    def __init__(
        self,
        opts: SendOptions,
        *,
        submit: Sender | None = None,
        match: Sender | None = None,
        batch: int = 1000,
    ) -> None:
        self.opts = opts
        self.submit = submit
        self.match = match
        self.batch = batch
        self._files: list[FileHashes] = []
        self._signals: list[tuple[int, str, dict[str, Any]]] = []  # (file index, type, item)
        self._queries: list[tuple[int, str, dict[str, Any]]] = []
        self._notes: list[dict[str, str]] = []
        self.counts: dict[str, int] = {}
        # Items the node refused or never got (per signal / per query), and the first reason:
        # `signet hash` exits non-zero on any, with that reason as its one line.
        self.send_failures = 0
        self.first_failure: str | None = None

    def _failed(self, n: int, reason: str) -> None:
        self.send_failures += n
        if self.first_failure is None:
            self.first_failure = reason

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def add(self, h: FileHashes) -> list[dict[str, Any]]:
        """Queue one file; returns the lines of any batch this completed."""
        out: list[dict[str, Any]] = []
        sigs, s_notes = signal_items(h, self.opts) if self.submit else ([], {})
        qs, q_notes = query_items(h, self.opts) if self.match else ([], {})
        if self._files and (
            len(self._signals) + len(sigs) > self.batch or len(self._queries) + len(qs) > self.batch
        ):
            out = self.flush()
        i = len(self._files)
        self._files.append(h)
        self._notes.append({**s_notes, **q_notes})
        self._signals += [(i, t, s) for t, s in sigs]
        self._queries += [(i, t, q) for t, q in qs]
        # Nothing to send: print each file as soon as it is hashed.
        if (self.submit is None and self.match is None) or (
            len(self._signals) >= self.batch or len(self._queries) >= self.batch
        ):
            out += self.flush()
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Send what is queued; the output lines of the queued files, in order."""
        lines = [f.as_json() for f in self._files]
        for line, notes in zip(lines, self._notes, strict=True):
            if notes:
                line["notes"] = notes
        if self.submit is not None:
            for line in lines:
                line["submitted"] = {}
            self._send_submit(lines)
        if self.match is not None:
            for line in lines:
                line["matches"] = []
            self._send_match(lines)
        self._files, self._signals, self._queries, self._notes = [], [], [], []
        return lines

    def _send_submit(self, lines: list[dict[str, Any]]) -> None:
        if not self._signals or self.submit is None:
            return
        try:
            answer = self.submit([s for _, _, s in self._signals])
        except Exception as exc:  # reported per file; the walk goes on
            for i, t, _ in self._signals:
                lines[i]["submitted"][t] = {"status": "error", "reason": str(exc)}
            self._count("submit error", len(self._signals))
            self._failed(len(self._signals), f"submit: {exc}")
            return
        for (i, t, _), item in zip(self._signals, answer["items"], strict=True):
            status = {"status": item["status"]}
            if item.get("id"):
                status["id"] = item["id"]
            if item.get("error"):
                status["reason"] = f"{item['error']['field']}: {item['error']['reason']}"
                self._failed(1, f"submit: {status['reason']}")
            lines[i]["submitted"][t] = status
            self._count(item["status"])

    def _send_match(self, lines: list[dict[str, Any]]) -> None:
        if not self._queries or self.match is None:
            return
        try:
            answer = self.match([q for _, _, q in self._queries])
        except Exception as exc:  # reported per file; the walk goes on
            for i, t, _ in self._queries:
                lines[i].setdefault("match_errors", {})[t] = str(exc)
            self._count("match error", len(self._queries))
            self._failed(len(self._queries), f"match: {exc}")
            return
        hit_files: set[int] = set()
        for (i, t, _), result in zip(self._queries, answer["results"], strict=True):
            if result["status"] != "ok":
                err = result.get("error") or {}
                lines[i].setdefault("match_errors", {})[t] = err.get("reason", "rejected")
                self._failed(1, f"match: {err.get('reason', 'rejected')}")
                continue
            for m in result["matches"]:
                lines[i]["matches"].append({"query": t, **m})
                hit_files.add(i)
        self._count("files matched", len(hit_files))
