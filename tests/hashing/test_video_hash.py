"""Client-side vPDQ on synthetic videos made with PyAV: frame choice, variants, CLI, privacy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.hashing import Pipeline, SendOptions, hash_file
from app.signals.types import canonicalize
from app.signals.types.video import parse_vpdq, vpdq_match
from app.videohash import VIDEO_EXTENSIONS, VideoDecodeError, vpdq_of_video

from .synth_video import make_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "original": make_video(d / "original.mp4", 1),
        # The variants a re-upload shows: bars, grey, lower resolution.
        "variant": make_video(d / "variant.mp4", 1, bars=30, grey=True, scale=0.75),
        "other": make_video(d / "other.mp4", 2),
    }


def test_one_frame_per_second_by_default(videos: dict[str, Path]) -> None:
    frames = vpdq_of_video(videos["original"])
    assert [(f.frame, f.seconds) for f in frames] == [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0)]
    assert all(f.quality >= 50 for f in frames)
    assert len(vpdq_of_video(videos["original"], fps=None)) == 40
    assert [f.frame for f in vpdq_of_video(videos["original"], fps=2.5)][:3] == [0, 4, 8]


def test_variants_match_and_unrelated_does_not(videos: dict[str, Path]) -> None:
    original = vpdq_of_video(videos["original"])
    variant = vpdq_of_video(videos["variant"])
    m = vpdq_match(variant, original)
    assert m.query_percent == 100 and m.compared_percent == 100
    assert m.query_ranges == [(0.0, 3.0)]
    assert vpdq_match(vpdq_of_video(videos["other"]), original).query_percent == 0
    # Without cropping, the bars alone push every frame out of reach.
    uncropped = vpdq_of_video(videos["variant"], crop=False)
    assert vpdq_match(uncropped, original).query_percent == 0


def test_progress_is_reported(videos: dict[str, Path]) -> None:
    seen: list[tuple[float, float]] = []
    vpdq_of_video(videos["original"], progress=lambda done, total: seen.append((done, total)))
    assert [d for d, _ in seen] == [0.0, 1.0, 2.0, 3.0] and seen[-1][1] > 3.0


def test_bad_video_is_that_files_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really")
    with pytest.raises(VideoDecodeError):
        vpdq_of_video(bad)
    h = hash_file(bad, video_extensions=VIDEO_EXTENSIONS)
    assert h.error and h.md5 and h.vpdq is None


def test_only_the_vpdq_text_is_sent(videos: dict[str, Path]) -> None:
    sent: list[list[dict[str, object]]] = []
    p = Pipeline(SendOptions(categories=("csam",)), submit=lambda items: _record(sent, items))
    p.add(hash_file(videos["original"], video_extensions=VIDEO_EXTENSIONS))
    p.flush()
    (batch,) = sent
    vpdq = next(i for i in batch if i["type"] == "vpdq")
    assert set(vpdq) == {"type", "value", "categories"}
    assert canonicalize("vpdq", vpdq["value"]).value == vpdq["value"]
    assert "original" not in json.dumps(batch)


def _record(sent: list[list[dict[str, object]]], items: list[dict[str, object]]) -> dict:
    sent.append(items)
    return {"items": [{"status": "created", "id": "x"} for _ in items]}


def test_cli_prints_vpdq(videos: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        cli_app, ["hash", str(videos["original"]), "--fps", "2", "--no-crop-bars"]
    )
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    frames = parse_vpdq(line["vpdq"])
    assert line["frames"] == len(frames) == 8 and len(line["md5"]) == 32
