"""vpdq across a federation of two real `signet serve` processes: `signet hash --submit` of a
video on one platform, `signet hash --match` of a re-encoded variant on the other."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.signals.types.video import format_vpdq
from tests.e2e.test_federation_e2e import key, nodes, wait_for
from tests.hashing.synth_video import make_video
from tests.signals.test_sig_video import every, published

pytestmark = pytest.mark.e2e


def _video_hits(url: str, auth: dict[str, str], value: str) -> list[dict[str, object]]:
    r = httpx.post(
        url + "/v1/match", headers=auth, json={"queries": [{"type": "vpdq", "value": value}]}
    )
    r.raise_for_status()
    return list(r.json()["results"][0]["matches"])


def test_video_signal_crosses_the_federation(tmp_path: Path) -> None:
    original = make_video(tmp_path / "original.mp4", 5)
    variant = make_video(tmp_path / "variant.mp4", 5, bars=24, grey=True, scale=0.75)
    with nodes(tmp_path, "platform-a.test", "platform-b.test") as (a, b):
        for p in (a, b):
            p.start()
        vkeys = {p.origin: p.cli("key", "show").stdout.strip() for p in (a, b)}
        a.cli("peers", "add", b.url, "--key", vkeys[b.origin])
        b.cli("peers", "add", a.url, "--key", vkeys[a.origin])
        auth = {p.origin: key(p, "submit,match,read") for p in (a, b)}

        # Platform A publishes the video (every frame) with the CLI; only hashes leave it.
        a.env["SIGNET_URL"] = a.url
        a.env["SIGNET_API_KEY"] = auth[a.origin]["Authorization"][7:]
        out = a.cli(
            "hash", str(original), "--submit", "--categories", "csam", "--fps", "0",
            "--types", "vpdq",
        )  # fmt: skip
        line = json.loads(out.stdout)
        assert line["submitted"]["vpdq"]["status"] == "created", line
        sid = line["submitted"]["vpdq"]["id"]
        # And Meta's published chair hashes through the API.
        r = httpx.post(
            a.url + "/v1/signals",
            headers=auth[a.origin],
            json={
                "signals": [
                    {"type": "vpdq", "value": published("chair-19-sd-bar"), "categories": ["csam"]}
                ]
            },
        )
        chair = r.json()["items"][0]["id"]

        chair_q = format_vpdq(every("chair-22-with-small-logo-bar", 30))
        door_q = format_vpdq(every("doorknob-hd-no-bar", 30))
        wait_for(lambda: [h["id"] for h in _video_hits(b.url, auth[b.origin], chair_q)] == [chair])
        assert _video_hits(b.url, auth[b.origin], door_q) == []

        # Platform B matches a re-encoded variant (bars, grey, smaller) at 1 fps with the CLI.
        b.env["SIGNET_URL"] = b.url
        b.env["SIGNET_API_KEY"] = auth[b.origin]["Authorization"][7:]
        got = json.loads(b.cli("hash", str(variant), "--match", "--types", "vpdq").stdout)
        (hit,) = got["matches"]
        assert hit["id"] == sid and hit["origin"] == "platform-a.test"
        assert hit["video"]["query_percent"] == 100

        httpx.post(
            a.url + f"/v1/signals/{sid}/retract", headers=auth[a.origin], json={"reason": "test"}
        ).raise_for_status()
        wait_for(lambda: _video_hits(b.url, auth[b.origin], got["vpdq"]) == [])
