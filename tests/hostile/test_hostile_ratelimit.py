"""Observation 2: a rate limit per API key, shared by workers; strangers refused cheaply.

On SQLite and PostgreSQL. Two `Node` objects over one database stand for two workers: each has
its own memory (leases, key directory), and only the database is shared.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services import apikeys
from app.services.node import Node, open_node
from app.settings import Settings
from tests.hostile.helpers import PDQ, QueryCounter

MATCH = {"queries": [{"type": "pdq", "value": PDQ}]}


@pytest.fixture
def limited(make_settings: Callable[..., Settings]) -> Iterator[tuple[Node, Any, Any]]:
    """Two workers of one node limited to 10 requests per minute per key."""
    settings = make_settings(rate_limit=10)
    first, second = open_node(settings), open_node(settings)
    with (
        TestClient(create_app(settings, node=first), raise_server_exceptions=False) as a,
        TestClient(create_app(settings, node=second), raise_server_exceptions=False) as b,
    ):
        yield first, a, b
    first.db.dispose()
    second.db.dispose()


def bearer(node: Node, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {apikeys.create(node, 'k', list(scopes)).key}"}


def test_the_limit_is_per_key_and_shared_by_workers(limited: tuple[Node, Any, Any]) -> None:
    node, a, b = limited
    flooder, calm = bearer(node, "match"), bearer(node, "match")
    codes = [(a if i % 2 else b).post("/v1/match", headers=flooder, json=MATCH).status_code
             for i in range(14)]  # fmt: skip
    # One bucket of 10 for the key, whichever worker answers (per-worker buckets would allow 20).
    assert codes.count(200) == 10 and codes[10:] == [429] * 4, codes
    refused = a.post("/v1/match", headers=flooder, json=MATCH)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["type"].endswith("/rate-limited")
    assert "SIGNET_RATE_LIMIT" in refused.json()["detail"]
    # The flood never touches another key's bucket.
    assert [b.post("/v1/match", headers=calm, json=MATCH).status_code for _ in range(10)] == [
        200
    ] * 10


def test_a_flooding_key_is_refused_from_memory(limited: tuple[Node, Any, Any]) -> None:
    node, a, _ = limited
    flooder = bearer(node, "match")
    codes = [a.post("/v1/match", headers=flooder, json=MATCH).status_code for _ in range(11)]
    assert codes[-1] == 429
    with QueryCounter(node.db) as counter:
        for _ in range(30):
            assert a.post("/v1/match", headers=flooder, json=MATCH).status_code == 429
    assert [s for s in counter.statements if "rate_bucket" in s] == []


def test_unknown_keys_cost_no_database_read(
    client: Any, node: Node, make_key: Callable[..., dict[str, str]], monkeypatch: Any
) -> None:
    monkeypatch.setattr(apikeys, "DIRECTORY_REFRESH_SECONDS", 3600.0, raising=False)
    known = make_key("match")
    assert client.post("/v1/match", headers=known, json=MATCH).status_code == 200
    first = {"Authorization": "Bearer sgn_" + secrets.token_urlsafe(32)}
    assert client.post("/v1/match", headers=first, json=MATCH).status_code == 401
    with QueryCounter(node.db) as counter:
        for _ in range(50):  # on the old code: one read of api_key each
            stranger = {"Authorization": "Bearer sgn_" + secrets.token_urlsafe(32)}
            r = client.post("/v1/match", headers=stranger, json=MATCH)
            assert r.status_code == 401
            assert r.json()["detail"] == "unknown or revoked API key"
        huge = {"Authorization": "Bearer " + "x" * 5000}
        assert client.post("/v1/match", headers=huge, json=MATCH).status_code == 401
    # (The worker's index refresh polls the log meanwhile; no statement reads the keys.)
    assert [s for s in counter.statements if "api_key" in s] == []
    # A key this worker creates works at once, even inside the quiet interval.
    fresh = make_key("match")
    assert client.post("/v1/match", headers=fresh, json=MATCH).status_code == 200


def test_a_new_key_works_at_first_use_on_another_worker(
    settings: Settings, node: Node, client: Any, monkeypatch: Any
) -> None:
    """The directory reload a miss triggers finds a key another worker created."""
    monkeypatch.setattr(apikeys, "DIRECTORY_REFRESH_SECONDS", 0.0, raising=False)
    assert client.get("/v1/signals", headers={"Authorization": "Bearer sgn_x"}).status_code == 401
    other_worker = open_node(settings)
    try:
        key = apikeys.create(other_worker, "k", ["read"]).key
    finally:
        other_worker.db.dispose()
    r = client.get("/v1/signals", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


def test_an_over_limit_key_is_refused_before_its_body_is_read(
    limited: tuple[Node, Any, Any],
) -> None:
    """Refusals cost no body parsing: a malformed body still gets 429, not 400."""
    node, a, _ = limited
    flooder = bearer(node, "match")
    codes = [a.post("/v1/match", headers=flooder, json=MATCH).status_code for _ in range(11)]
    assert codes[-1] == 429
    r = a.post("/v1/match", headers={**flooder, "content-type": "application/json"}, content=b"{")
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 60
