"""What the match path does to stay off the database and clear of the garbage collector
(issue 15, tail latency; docs/scaling.md, "Tail latency of /v1/match").

- an API key whose cache entry just expired still answers while one background thread
  re-reads it, and a key revoked elsewhere stops working once that re-read has seen it;
- the roster's drop list is read from memory on the match path;
- a large index is frozen out of the collector's sight after the load, and given back on stop.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.errors import Forbidden, Unauthenticated
from app.main import create_app
from app.services import apikeys, index_sync, roster
from app.services.node import Node
from app.settings import Settings

MD5 = "0123456789abcdef0123456789abcdef"


def _wait_refreshed(node: Node) -> None:
    cache = apikeys._cache(node)
    deadline = time.monotonic() + 10
    while cache._refreshing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cache._refreshing, "the background re-read never finished"


def test_expired_key_answers_while_it_is_reread(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = apikeys.create(node, "platform", ["match"])
    monkeypatch.setattr(apikeys, "CACHE_SECONDS", 0.0)  # every entry is expired at once
    first = apikeys.authenticate(node, created.key, "match")  # reads the database, caches
    assert apikeys.authenticate_cached(node, created.key, "match") is None  # expired

    threads_before = {t.ident for t in threading.enumerate()}
    again = apikeys.authenticate_nowait(node, created.key, "match")
    assert again == first  # the expired entry answered, without waiting
    started = [
        t
        for t in threading.enumerate()
        if t.ident not in threads_before and t.name == "apikey-refresh"
    ]
    _wait_refreshed(node)
    assert len(started) <= 1  # one re-read, not one per request

    # Revoked by another host: only the database knows; this process's cache still holds it.
    with node.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE api_key SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id"),
            {"id": first.id},
        )
    # The (expired) entry answers once more while the re-read runs; the re-read drops it.
    apikeys.authenticate_nowait(node, created.key, "match")
    _wait_refreshed(node)
    assert apikeys.authenticate_nowait(node, created.key, "match") is None
    with pytest.raises(Unauthenticated):
        apikeys.authenticate(node, created.key, "match")


def test_expired_key_still_needs_its_scope(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    created = apikeys.create(node, "reader", ["read"])
    monkeypatch.setattr(apikeys, "CACHE_SECONDS", 0.0)
    apikeys.authenticate(node, created.key, "read")
    with pytest.raises(Forbidden):
        apikeys.authenticate_nowait(node, created.key, "match")
    _wait_refreshed(node)


def test_entry_too_old_is_not_used(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    created = apikeys.create(node, "platform", ["match"])
    monkeypatch.setattr(apikeys, "CACHE_SECONDS", 0.0)
    monkeypatch.setattr(apikeys, "STALE_SECONDS", 0.0)
    apikeys.authenticate(node, created.key, "match")
    time.sleep(0.01)
    assert apikeys.authenticate_nowait(node, created.key, "match") is None  # ask the database


def test_roster_drop_list_is_read_from_memory(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    roster._forget_cache(node)
    assert roster.dropped_nowait(node) == frozenset()  # nothing cached: read once
    reads: list[int] = []
    real_read = node.db.read

    def counting_read(*args: object, **kwargs: object) -> object:
        reads.append(1)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(node.db, "read", counting_read)
    assert roster.dropped_nowait(node) == frozenset()
    assert reads == []  # served from memory
    roster._forget_cache(node)  # a roster change in this process clears it
    roster.dropped_nowait(node)
    assert reads  # and the next call reads again


def test_large_index_is_frozen_and_unfrozen(
    settings: Settings,
    node: Node,
    make_key: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_sync, "FREEZE_AT", 0)  # every index counts as large here
    gc.unfreeze()
    headers = make_key("submit", "match")
    with TestClient(create_app(settings, node=node)) as c:
        assert gc.get_freeze_count() > 0
        r = c.post(
            "/v1/signals",
            json={"signals": [{"type": "md5", "value": MD5, "categories": ["csam"]}]},
            headers=headers,
        )
        assert r.json()["items"][0]["status"] == "created", r.text
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # new signals are indexed as usual after the freeze
            r = c.post(
                "/v1/match", json={"queries": [{"type": "md5", "value": MD5}]}, headers=headers
            )
            if r.json()["results"][0]["matches"]:
                break
            time.sleep(0.05)
        assert r.json()["results"][0]["matches"], r.text
    assert gc.get_freeze_count() == 0  # stop handed everything back to the collector
