"""vpdq through the API, on SQLite and PostgreSQL: publish videos, match a variant."""

from __future__ import annotations

from typing import Any

from app.signals.types.video import format_vpdq
from tests.signals.test_sig_video import every, published


def _submit(client: Any, auth: dict[str, str], *names: str) -> list[str]:
    signals = [
        {"type": "vpdq", "value": published(n), "categories": ["csam"], "allow_low_quality": True}
        for n in names
    ]
    r = client.post("/v1/signals", headers=auth, json={"signals": signals})
    assert r.status_code == 200, r.text
    assert [i["status"] for i in r.json()["items"]] == ["created"] * len(names), r.text
    return [i["id"] for i in r.json()["items"]]


def _match(client: Any, auth: dict[str, str], *queries: dict[str, Any]) -> list[dict[str, Any]]:
    r = client.post("/v1/match", headers=auth, json={"queries": list(queries)})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_variant_matches_with_percentages_and_ranges(client: Any, auth: dict[str, str]) -> None:
    chair, door = _submit(client, auth, "chair-19-sd-bar", "doorknob-hd-no-bar")
    got = client.get(f"/v1/signals/{chair}", headers=auth).json()
    assert got["value"] == published("chair-19-sd-bar").strip()  # stored whole (44 kB)
    q = format_vpdq(every("chair-22-with-small-logo-bar", 30))
    door_q = format_vpdq(every("doorknob-hd-no-bar", 30))
    pattern_q = format_vpdq(every("pattern-hd-no-bar", 30))
    res = _match(
        client,
        auth,
        {"type": "vpdq", "value": q},
        {"type": "vpdq", "value": door_q},
        {"type": "vpdq", "value": pattern_q},
        {"type": "vpdq", "value": q, "compared_percent": 50},
        {"type": "vpdq", "value": q, "threshold": 1},
    )
    (hit,) = res[0]["matches"]
    assert hit["id"] == chair and hit["type"] == "vpdq" and hit["distance"] <= 31
    v = hit["video"]
    assert v["query_percent"] >= 80 and 0 < v["compared_percent"] < 50
    assert v["query_ranges"][0][0] >= 0 and v["compared_ranges"]
    assert [m["id"] for m in res[1]["matches"]] == [door]
    assert res[2]["matches"] == []
    assert res[3]["matches"] == []  # the stored video's share is below the asked 50 %
    assert res[4]["matches"] == []  # frames are not within 1 bit


def test_bad_vpdq_is_refused_per_item(client: Any, auth: dict[str, str]) -> None:
    good = {"type": "vpdq", "value": published("doorknob-hd-no-bar"), "categories": ["csam"]}
    bad = {**good, "value": "0,100,zz,0.0"}
    r = client.post("/v1/signals", headers=auth, json={"signals": [good, bad]})
    items = r.json()["items"]
    assert [i["status"] for i in items] == ["created", "rejected"]
    assert items[1]["error"]["field"] == "signals[1].value"
    assert "line 1" in items[1]["error"]["reason"]
    res = _match(client, auth, {"type": "vpdq", "value": "nope"}, {"type": "vpdq", "value": ""})
    assert [r["status"] for r in res] == ["rejected", "rejected"]
    assert res[0]["error"]["field"] == "queries[0].value"
