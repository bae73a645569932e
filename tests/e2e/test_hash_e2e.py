"""A new user's path: `signet hash --submit` a folder of images to a real node, then
`signet hash --match` altered copies finds every original and nothing unrelated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hashing.synth import ALTERATIONS, write_set

from .node_proc import running_node

pytestmark = pytest.mark.e2e

ORIGINALS = range(20)
UNRELATED = range(500, 505)


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_hash_submit_then_match_altered_copies(tmp_path: Path) -> None:
    write_set(tmp_path / "originals", ORIGINALS)
    for alter in ALTERATIONS:
        write_set(tmp_path / "altered", ORIGINALS, alter=alter)
    write_set(tmp_path / "unrelated", UNRELATED)

    with running_node(tmp_path) as node:
        key = node.create_key("submit,match")
        sub = node.signet(
            "hash", str(tmp_path / "originals"), "--submit", "--categories", "csam", key=key
        )
        assert sub.returncode == 0, sub.stderr
        submitted = _lines(sub.stdout)
        assert len(submitted) == len(ORIGINALS)
        for line in submitted:
            assert {t: s["status"] for t, s in line["submitted"].items()} == {
                "pdq": "created",
                "md5": "created",
                "sha256": "created",
            }, line
        ids = {Path(x["path"]).stem: x["submitted"]["pdq"]["id"] for x in submitted}

        found = node.signet("hash", str(tmp_path / "altered"), "--match", key=key)
        assert found.returncode == 0, found.stderr
        altered = _lines(found.stdout)
        assert len(altered) == len(ORIGINALS) * len(ALTERATIONS)
        distances = []
        for line in altered:
            original = Path(line["path"]).stem.rsplit("-", 1)[0]
            pdq_hits = [m for m in line["matches"] if m["query"] == "pdq"]
            # Re-encoded copies have new bytes: only PDQ can find them, and it finds the original.
            assert [m["id"] for m in pdq_hits] == [ids[original]], line
            assert all(m["query"] == "pdq" for m in line["matches"])
            distances.append(pdq_hits[0]["distance"])
        print(
            f"PDQ distance of altered copies: max {max(distances)}, mean "
            f"{sum(distances) / len(distances):.1f}"
        )

        same = node.signet("hash", str(tmp_path / "originals" / "img-003.png"), "--match", key=key)
        assert {m["query"] for m in _lines(same.stdout)[0]["matches"]} == {"pdq", "md5", "sha256"}

        none = node.signet("hash", str(tmp_path / "unrelated"), "--match", key=key)
        assert none.returncode == 0, none.stderr
        assert all(line["matches"] == [] for line in _lines(none.stdout))

    # The node saw hashes, never media: its log names no file and carries no image data.
    log = node.log.read_bytes()
    assert b"img-" not in log and b"PNG" not in log
