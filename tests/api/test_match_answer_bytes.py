"""A match answer built from the index's columnar signal table is byte for byte the answer built
from the database row of each hit, as the index's per-signal `public` dicts were before
(`index_sync._indexed`); on SQLite and PostgreSQL, for a mix of types, after feedback."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import select

from app.services import index_sync
from app.services.node import Node

PDQ = random.Random(15).randbytes(32).hex()
NEAR = f"{int(PDQ, 16) ^ 0b10110:064x}"  # 3 bits away


def _from_database(node: Node) -> Any:
    def public(row_id: int) -> dict[str, Any] | None:
        with node.db.read() as session:
            row = (
                session.connection()
                .execute(select(*index_sync._COLUMNS).where(index_sync._SIGNAL.id == row_id))
                .one_or_none()
            )
        if row is None or row.status != "active":
            return None
        return dict(index_sync._indexed(row).public)

    return public


def test_match_answer_bytes_are_those_of_the_database_rows(
    client: Any, node: Node, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    signals = [
        {"type": "md5", "value": "9e107d9d372bb6826bd81d3542a419d6", "categories": ["csam"]},
        {"type": "pdq", "value": PDQ, "quality": 90, "categories": ["csam", "ncii"],
         "confidence": 85, "reviewed": True, "valid_until": "2031-02-03T04:05:06.789012Z"},
        {"type": "pdq", "value": NEAR, "quality": 90, "categories": ["csam"]},
        {"type": "keyword", "value": "Snap  ME", "categories": ["grooming"],
         "indicators": ["off_platform_migration"], "opinion": "positive"},
        {"type": "domain", "value": "bad-site.example", "categories": ["csam"]},
        {"type": "sha256", "value": "ab" * 32, "categories": ["trafficking"],
         "opinion": "negative"},
    ]  # fmt: skip
    r = client.post("/v1/signals", headers=auth, json={"signals": signals})
    assert r.json()["created"] == len(signals), r.text
    ids = [i["id"] for i in r.json()["items"]]
    r = client.post(
        "/v1/feedback", headers=auth, json={"signal": ids[1], "verdict": "true_positive"}
    )
    assert r.status_code == 200, r.text
    queries: list[dict[str, Any]] = [
        {"type": "md5", "value": "9E107D9D372BB6826BD81D3542A419D6"},
        {"type": "pdq", "value": PDQ},
        {"type": "text", "value": "hey, snap me later"},
        {"type": "keyword", "value": "snap me"},
        {"type": "url", "value": "https://cdn.bad-site.example/x.jpg"},
        {"type": "domain", "value": "bad-site.example"},
        {"type": "sha256", "value": "AB" * 32},
        {"type": "md5", "value": "0" * 32},
    ]
    bodies = [{"queries": queries}, {"queries": queries[:1]}, {"queries": queries[1:2]}]
    from_table = [client.post("/v1/match", headers=auth, json=b) for b in bodies]
    monkeypatch.setattr(node.index, "public", _from_database(node))
    from_rows = [client.post("/v1/match", headers=auth, json=b) for b in bodies]
    for a, b in zip(from_table, from_rows, strict=True):
        assert a.status_code == b.status_code == 200, a.text
        assert a.content == b.content
    results = from_table[0].json()["results"]
    assert [len(res["matches"]) for res in results] == [1, 2, 1, 1, 1, 1, 1, 0]
    hit = results[1]["matches"][0]
    assert hit["id"] == ids[1] and hit["feedback_status"] == "confirmed"
    assert hit["valid_until"] == "2031-02-03T04:05:06Z"  # the service keeps whole seconds
