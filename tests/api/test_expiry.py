"""Expired signals stop matching at once; expired and retracted ones are purged after retention."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from app.services import matching, signals
from app.storage.models import SignalRow
from app.storage.types import utcnow


def test_expiry_stops_matching_then_purge(
    client: Any, node: Any, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tomorrow = (utcnow() + timedelta(days=1)).isoformat()
    items = [
        {"type": "sha256", "value": "ab" * 32, "categories": ["csam"], "valid_until": tomorrow},
        {"type": "sha256", "value": "cd" * 32, "categories": ["csam"]},
    ]
    r = client.post("/v1/signals", headers=auth, json={"signals": items})
    first, second = (i["id"] for i in r.json()["items"])
    query = {"queries": [{"type": "sha256", "value": v} for v in ("ab" * 32, "cd" * 32)]}

    def hits() -> list[int]:
        results = client.post("/v1/match", headers=auth, json=query).json()["results"]
        return [len(r["matches"]) for r in results]

    assert hits() == [1, 1]
    # Two days later the first has expired; nothing was written, and it no longer matches.
    later = time.time() + 2 * 86400
    monkeypatch.setattr(matching, "time", SimpleNamespace(time=lambda: later))
    assert hits() == [0, 1]
    monkeypatch.undo()

    # The database's view: move the first signal's end into the past.
    with node.db.write() as session:
        session.execute(
            update(SignalRow)
            .where(SignalRow.uid == first)  # type: ignore[arg-type]
            .values(valid_until=utcnow() - timedelta(seconds=1))
        )
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
