"""The transparency report: figures from verified entries alone, byte-identical JSON for the
same log size, and no report from a log that does not verify."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.audit import report as transparency
from app.audit.errors import AuditFailed
from app.crypto.keys import VerifierKey
from app.services import apikeys
from app.services.node import Node


def _submit(client: Any, auth: dict[str, str], items: list[dict[str, Any]]) -> list[str]:
    r = client.post("/v1/signals", json={"signals": items}, headers=auth)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


def _populate(client: Any, auth: dict[str, str]) -> list[str]:
    ids = _submit(
        client,
        auth,
        [
            {"type": "md5", "value": "a" * 32, "categories": ["csam"]},
            {"type": "md5", "value": "b" * 32, "categories": ["csam", "grooming"]},
            {"type": "sha256", "value": "c" * 64, "categories": ["grooming"]},
            {
                "type": "md5",
                "value": "d" * 32,
                "categories": ["csam"],
                "audience": {"tlp": "amber", "peers": [], "hops": 0},
            },
        ],
    )
    r = client.post(f"/v1/signals/{ids[1]}/retract", json={"reason": "wrong"}, headers=auth)
    assert r.status_code == 200, r.text
    for verdict in ("true_positive", "false_positive"):
        r = client.post("/v1/feedback", json={"signal": ids[0], "verdict": verdict}, headers=auth)
        assert r.status_code == 200, r.text
    return ids


def test_cli_path_report_from_a_verified_log(client: Any, node: Node, auth: dict[str, str]) -> None:
    _populate(client, auth)
    token = apikeys.create(node, "auditor", ["audit"]).key
    pinned = VerifierKey.parse(node.verifier_key)
    origin, note, entries = transparency.collect_node("http://x", token, pinned, http=client)
    rep = transparency.compute(origin, note, entries)
    s = rep["signals"]
    assert s["published"]["by_type"] == {"md5": 2, "sha256": 1}
    assert s["published"]["by_category"] == {"csam": 2, "grooming": 2}
    assert s["retracted"]["by_type"] == {"md5": 1}
    assert s["retracted"]["by_category"] == {"csam": 1, "grooming": 1}
    restricted = s["published"]["restricted_by_tlp"]
    assert sum(restricted.values()) <= 1  # the amber one, if this node accepted it
    assert rep["feedback"]["given"] == {"false_positive": 1, "true_positive": 1}
    assert rep["log"]["size"] == len(entries)

    # Same log size, a second "machine": byte-identical JSON; and the console's page agrees.
    again = transparency.compute(*transparency.collect_node("http://x", token, pinned, http=client))
    assert transparency.to_json(again) == transparency.to_json(rep)
    assert transparency.to_json(transparency.node_report(node)) == transparency.to_json(rep)
    assert transparency.to_markdown(rep).startswith("# Transparency report: test.example")


def test_no_report_from_an_altered_log(client: Any, node: Node, auth: dict[str, str]) -> None:
    from sqlalchemy import text

    _populate(client, auth)
    token = apikeys.create(node, "auditor", ["audit"]).key
    client.post("/v1/log/checkpoint", headers={"Authorization": f"Bearer {_admin(node)}"})
    with node.db.write() as session:
        session.execute(
            text(
                "UPDATE log_entry SET data = replace(data, 'grooming', 'groomers') "
                "WHERE kind = 'signal'"
            )
        )
    with pytest.raises(AuditFailed, match="altered"):
        transparency.collect_node(
            "http://x", token, VerifierKey.parse(node.verifier_key), http=client
        )
    with pytest.raises(AuditFailed):
        transparency.node_report(node)
    client.cookies.clear()


def _admin(node: Node) -> str:
    return apikeys.create(node, "admin", ["admin"]).key


def _e(kind: str, t: str, **body: Any) -> dict[str, Any]:
    return {"kind": kind, "time": t, **body}


NOTE_ORIGIN = "r.example"


def _note(size: int) -> str:
    import base64

    root = base64.b64encode(bytes(32)).decode()
    return (
        f"{NOTE_ORIGIN}\n{size}\n{root}\n\n\u2014 {NOTE_ORIGIN} "
        + base64.b64encode(bytes(68)).decode()
        + "\n"
    )


def test_propagation_expiry_windows_from_entries_alone() -> None:
    from app.crypto.records import record_digest

    sig = {
        "kind": "signal",
        "origin": NOTE_ORIGIN,
        "id": "s1",
        "type": "pdq",
        "categories": ["csam"],
        "valid_until": "2026-01-05T00:00:00Z",
    }
    old = {**sig, "id": "s0", "valid_until": "2026-01-02T00:00:00Z"}
    retraction = {
        "kind": "retraction",
        "origin": NOTE_ORIGIN,
        "signal": {"origin": NOTE_ORIGIN, "id": "s1"},
    }
    digest = record_digest(retraction).hex()
    entries = [
        _e("signal", "2026-01-01T00:00:00Z", record=old),
        _e("signal", "2026-01-01T00:00:01Z", record=sig),
        _e("signal", "2026-01-01T00:00:02Z", commitment="ab" * 32, tlp="red"),
        _e("retraction", "2026-01-03T00:00:00Z", record=retraction),
        _e("delivered", "2026-01-03T00:00:10Z", to="p1.example", count=1, digests=[digest]),
        _e("delivered", "2026-01-03T00:01:00Z", to="p2.example", count=2, digests=["x", digest]),
        _e(
            "received",
            "2026-01-03T00:02:00Z",
            **{"from": "p1.example", "digest": "y"},
            commitment="cd" * 32,
            tlp="amber",
        ),
        _e("refused", "2026-01-03T00:03:00Z", **{"from": "p2.example", "count": 3, "reasons": []}),
        _e("config", "2026-01-06T00:00:00Z", config={}),
    ]
    rep = transparency.compute(NOTE_ORIGIN, _note(len(entries)), enumerate(entries))
    assert rep["signals"]["published"]["restricted_by_tlp"] == {"red": 1}
    assert rep["signals"]["retracted"]["by_type"] == {"pdq": 1}
    assert rep["signals"]["expired"]["by_type"] == {"pdq": 1}  # s0: not retracted, past due
    assert rep["retraction_propagation"] == {
        "p1.example": {"count": 1, "median_seconds": 10, "p95_seconds": 10},
        "p2.example": {"count": 1, "median_seconds": 60, "p95_seconds": 60},
    }
    assert rep["exchanges"] == {
        "p1.example": {"delivered": 1, "received": 1, "refused": 0},
        "p2.example": {"delivered": 2, "received": 0, "refused": 3},
    }
    # A window: only what the log dates inside it.
    since = transparency.parse_bound("2026-01-02")
    windowed = transparency.compute(
        NOTE_ORIGIN, _note(len(entries)), enumerate(entries), since=since
    )
    assert windowed["signals"]["published"]["total"] == 0
    assert windowed["signals"]["retracted"]["total"] == 1
    # Deterministic text: sorted keys, no floats, no clock.
    text = transparency.to_json(rep)
    assert text == transparency.to_json(json.loads(text))
    figures = [v for p in rep["retraction_propagation"].values() for v in p.values()]
    assert all(type(v) is int for v in figures)
