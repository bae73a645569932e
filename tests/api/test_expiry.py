"""Expired signals stop matching at once; expired and retracted ones are purged after retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from app.services import signals
from app.storage.models import SignalRow
from app.storage.types import utcnow


def test_expiry_stops_matching_then_purge(client: Any, node: Any, auth: dict[str, str]) -> None:
    items = [
        {"type": "sha256", "value": "ab" * 32, "categories": ["csam"]},
        {"type": "sha256", "value": "cd" * 32, "categories": ["csam"]},
    ]
    r = client.post("/v1/signals", headers=auth, json={"signals": items})
    first, second = (i["id"] for i in r.json()["items"])
    query = {"queries": [{"type": "sha256", "value": "ab" * 32}]}
    assert (
        len(client.post("/v1/match", headers=auth, json=query).json()["results"][0]["matches"]) == 1
    )

    # Time passes for the first signal only (no write touches the match index).
    with node.db.write() as session:
        session.execute(
            update(SignalRow)
            .where(SignalRow.uid == first)  # type: ignore[arg-type]
            .values(valid_until=utcnow() - timedelta(seconds=1))
        )
    assert client.post("/v1/match", headers=auth, json=query).json()["results"][0]["matches"] == []
    assert client.get(f"/v1/signals/{first}", headers=auth).json()["status"] == "expired"
    listed = client.get("/v1/signals", headers=auth, params={"status": "active"}).json()["items"]
    assert [s["id"] for s in listed] == [second]

    assert signals.expire_due(node) == 1
    client.post(f"/v1/signals/{second}/retract", headers=auth, json={"reason": "test"})
    # Nothing is purged inside the retention period...
    assert signals.purge(node) == 0
    # ...and both go once it has passed.
    node.settings.retention_days = 0
    assert signals.purge(node) == 2
    assert client.get(f"/v1/signals/{first}", headers=auth).status_code == 404
