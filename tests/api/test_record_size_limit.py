"""The record-size limit (`SIGNET_MAX_RECORD_BYTES`) holds for what this node publishes as a
peer measures it: the signed record, origin, key id and signature included. A submitted signal
whose body fits but whose signed record does not is refused (a peer would refuse the record)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from app.crypto.canonical import canonical_json
from app.services.node import Node
from app.settings import Settings
from app.storage.models import SignalRow

LIMIT = 1024


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(max_record_bytes=LIMIT)


def test_a_published_record_never_exceeds_the_limit_a_peer_applies(
    client: Any, node: Node, auth: dict[str, str]
) -> None:
    # Records growing ~16 bytes a step across the limit (more peers named in the audience).
    accepted = refused = 0
    for n in range(1, 70):
        peers = [f"p{i:03d}.example" for i in range(n)]
        item = {
            "type": "md5",
            "value": f"{n:032x}",
            "categories": ["csam"],
            "audience": {"tlp": "amber", "peers": peers},
        }
        r = client.post("/v1/signals", headers=auth, json={"signals": [item]})
        assert r.status_code == 200, r.text
        result = r.json()["items"][0]
        if result["status"] == "created":
            accepted += 1
        else:
            refused += 1
            assert result["status"] == "rejected"
            assert result["error"]["field"] == "signals[0].record", result
            assert f"more than the {LIMIT} allowed" in result["error"]["reason"]
    assert accepted and refused
    with node.db.read() as session:
        rows = list(session.execute(select(SignalRow)).scalars())
    assert len(rows) == accepted
    sizes = sorted(len(canonical_json(row.record)) for row in rows)
    assert sizes[-1] <= LIMIT, sizes[-5:]
