"""`app.hashing`: digests, PDQ robustness on synthetic images, the walk, and what is sent."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app import hashing
from app.cli import app as cli_app
from app.client import NodeClient, NodeRequestError
from app.hashing import FileHashes, Pipeline, SendOptions, hamming, hash_file, pdq_of_image

from .synth import ALTERATIONS, jpeg, make_image, resized, write_set

HEX = re.compile(r"^[0-9a-f]+$")


def test_digests_are_streamed_and_exact(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 * hashing.CHUNK // 256 + 7)  # spans several reads
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    h = hash_file(p)
    assert (h.size, h.md5, h.sha256) == (
        len(data),
        hashlib.md5(data).hexdigest(),  # the value under test
        hashlib.sha256(data).hexdigest(),
    )
    assert h.pdq is None and h.error is None


def test_pdq_is_deterministic() -> None:
    img = make_image(7)
    assert pdq_of_image(img) == pdq_of_image(img.copy()) == pdq_of_image(make_image(7))


@pytest.mark.parametrize("seed", range(8))
def test_pdq_survives_resize_and_recompression(seed: int) -> None:
    img = make_image(seed)
    original, quality = pdq_of_image(img)
    assert quality >= 50
    assert hamming(original, pdq_of_image(jpeg(resized(img, 0.5), 90))[0]) <= 16
    for name, alter in ALTERATIONS.items():
        assert hamming(original, pdq_of_image(alter(img))[0]) <= 31, name


def test_unrelated_images_are_far_apart() -> None:
    codes = [pdq_of_image(make_image(s))[0] for s in range(100, 116)]
    assert min(hamming(a, b) for a, b in itertools.combinations(codes, 2)) >= 80


def test_walk_reports_each_bad_file_and_goes_on(tmp_path: Path) -> None:
    write_set(tmp_path / "d" / "sub", range(2))
    (tmp_path / "d" / "notes.txt").write_text("hello")
    (tmp_path / "d" / "broken.jpg").write_bytes(b"not a jpeg")
    paths = list(hashing.iter_files([tmp_path / "d", tmp_path / "missing.png"]))
    results = {p.name: hash_file(p) for p in paths}
    assert list(results) == ["broken.jpg", "notes.txt", "img-000.png", "img-001.png", "missing.png"]
    assert results["broken.jpg"].md5 and "not a decodable image" in (
        results["broken.jpg"].error or ""
    )
    assert results["notes.txt"].pdq is None and results["notes.txt"].error is None
    assert results["img-000.png"].pdq and results["img-000.png"].quality == 100
    assert results["missing.png"].error and results["missing.png"].md5 is None


def _files() -> list[FileHashes]:
    good = FileHashes("a.png", 10, "0" * 31 + "1", "0" * 63 + "1", "ab" * 32, 90)
    low = FileHashes("b.png", 10, "0" * 31 + "2", "0" * 63 + "2", "cd" * 32, 20)
    empty = FileHashes("c.txt", 0, "d41d8cd98f00b204e9800998ecf8427e", "e3" * 32)
    return [good, low, empty]


def test_low_quality_and_empty_files_are_not_sent() -> None:
    sent: list[list[dict[str, Any]]] = []

    def submit(items: list[dict[str, Any]]) -> dict[str, Any]:
        sent.append(items)
        return {"items": [{"status": "created", "id": f"s{i}"} for i in range(len(items))]}

    p = Pipeline(SendOptions(categories=("csam",)), submit=submit)
    lines = [line for f in _files() for line in p.add(f)] + p.flush()
    assert [(s["type"], s.get("quality")) for s in sent[0]] == [
        ("pdq", 90),
        ("md5", None),
        ("sha256", None),
        ("md5", None),
        ("sha256", None),
    ]
    assert lines[0]["submitted"]["pdq"] == {"status": "created", "id": "s0"}
    assert "quality 20 < 50" in lines[1]["notes"]["pdq"]
    assert lines[2]["notes"] == {"file": "empty file: nothing to send"}
    assert p.counts == {"created": 5}


def test_requests_are_batched_within_the_limit() -> None:
    sizes: list[int] = []

    def match(items: list[dict[str, Any]]) -> dict[str, Any]:
        sizes.append(len(items))
        return {"results": [{"status": "ok", "matches": []} for _ in items]}

    p = Pipeline(SendOptions(), match=match, batch=7)
    files = [_files()[0]] * 10  # three queries each
    lines = [line for f in files for line in p.add(f)] + p.flush()
    assert len(lines) == 10 and all(line["matches"] == [] for line in lines)
    assert max(sizes) <= 7 and sum(sizes) == 30


def test_only_hex_hashes_reach_the_node(tmp_path: Path) -> None:
    """Everything sent through the real client: no path, no file name, no image byte."""
    paths = write_set(tmp_path / "imgs", range(3))
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        n = len(
            json.loads(request.content)["queries" if "match" in request.url.path else "signals"]
        )
        if request.url.path == "/v1/match":
            return httpx.Response(200, json={"results": [{"status": "ok", "matches": []}] * n})
        return httpx.Response(200, json={"items": [{"status": "created", "id": "x"}] * n})

    with NodeClient("http://node.test", "k", transport=httpx.MockTransport(handler)) as c:
        p = Pipeline(SendOptions(categories=("csam",)), submit=c.submit_signals, match=c.match)
        for path in paths:
            p.add(hash_file(path))
        p.flush()
    assert len(bodies) == 2
    image_bytes = [path.read_bytes() for path in paths]
    for body in bodies:
        doc = json.loads(body)
        for item in doc.get("signals", []) + doc.get("queries", []):
            assert HEX.match(item["value"]) and len(item["value"]) in (32, 64)
            assert set(item) <= {"type", "value", "quality", "categories", "threshold"}
        assert b"img-" not in body and str(tmp_path).encode() not in body
        assert all(img[16:80] not in body for img in image_bytes)


def test_client_raises_the_nodes_problem() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer secret-key"
        return httpx.Response(401, json={"title": "Unauthorized", "detail": "unknown API key"})

    with (
        NodeClient("http://node.test", "secret-key", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(NodeRequestError) as info,
    ):
        c.match([])
    assert info.value.status == 401 and "unknown API key" in str(info.value)
    assert "secret-key" not in str(info.value)


def test_cli_prints_one_json_line_per_file(tmp_path: Path) -> None:
    write_set(tmp_path / "d", range(2))
    (tmp_path / "d" / "broken.png").write_bytes(b"\x89PNG nope")
    result = CliRunner().invoke(cli_app, ["hash", str(tmp_path / "d")])
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert result.exit_code == 1  # one file failed; the others were still hashed
    assert [Path(x["path"]).name for x in lines] == ["broken.png", "img-000.png", "img-001.png"]
    assert "error" in lines[0] and lines[1]["quality"] == 100 and len(lines[2]["pdq"]) == 64


def test_cli_submit_needs_categories(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["hash", str(tmp_path), "--submit"])
    assert result.exit_code == 2 and "--categories" in result.output
