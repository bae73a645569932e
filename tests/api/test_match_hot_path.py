"""What the match path does to stay off the database and clear of the garbage collector
(issue 15, tail latency; docs/scaling.md, "Tail latency of /v1/match").

- an API key whose cache entry just expired still answers while one background thread
  re-reads it, and a key revoked elsewhere stops working once that re-read has seen it;
- the roster's drop list is read from memory on the match path;
- a large index is frozen out of the collector's sight after the load, and given back on stop;
- small PDQ and md5 requests that arrive together are searched as one batch, each answered
  as its own.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api.fairness import MatchCoalescer, MatchGate
from app.errors import Forbidden, Unauthenticated
from app.main import create_app
from app.schemas import MatchBatchResult, MatchResult
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


# --- concurrent small PDQ requests share one search (app/api/fairness.py MatchCoalescer) -----


def _flip(code: str, bits: int) -> str:
    return f"{int(code, 16) ^ ((1 << bits) - 1):064x}"


def test_which_requests_may_be_combined() -> None:
    ok = {"type": "pdq", "value": "ab" * 32}
    assert MatchCoalescer.eligible([ok], 31)
    assert MatchCoalescer.eligible([ok, {**ok, "threshold": 31}, {**ok, "threshold": 0}], 31)
    assert not MatchCoalescer.eligible([], 31)
    assert not MatchCoalescer.eligible([ok] * 5, 31)  # bigger requests go on their own
    md5 = {"type": "md5", "value": "AB" * 16}
    assert MatchCoalescer.eligible([ok, md5], 31)
    for bad in (
        {**ok, "threshold": 32},  # could be refused: the refusal names the request's own index
        {**ok, "threshold": -1},
        {**ok, "threshold": True},
        {**ok, "value": "ab" * 31},
        {**ok, "report_seen": True},  # sends feedback: handled per request
        {"type": "md5", "value": "ab" * 15},
        {"type": "md5", "value": "D41D8CD98F00B204E9800998ECF8427E"},  # empty input: refused
        {"type": "md5", "value": "ab" * 16, "threshold": 3},
        {"type": "sha256", "value": "ab" * 32},
        "not an object",
    ):
        assert not MatchCoalescer.eligible([ok, bad], 31), bad


def test_each_request_gets_its_own_answers_renumbered() -> None:
    calls: list[list[object]] = []

    def search(queries: list[dict[str, str]]) -> MatchBatchResult:
        calls.append(list(queries))
        time.sleep(0.02)  # long enough for the others to queue behind the first batch
        return MatchBatchResult(
            results=[
                MatchResult(index=i, status="ok", truncated=q["value"].startswith("1"))
                for i, q in enumerate(queries)
            ]
        )

    async def go() -> list[MatchBatchResult]:
        coalescer = MatchCoalescer(MatchGate())
        requests = [
            [{"type": "pdq", "value": f"{i % 2}" * 64} for _ in range(1 + i % 3)] for i in range(12)
        ]
        answers = await asyncio.gather(*(coalescer.run(7, search, r, 1000) for r in requests))
        for r, a in zip(requests, answers, strict=True):
            assert [x.index for x in a.results] == list(range(len(r)))
            assert [x.truncated for x in a.results] == [q["value"][0] == "1" for q in r]
        return answers

    asyncio.run(go())
    assert sum(len(c) for c in calls) == sum(1 + i % 3 for i in range(12))
    assert len(calls) < 12  # requests that waited were searched together
    assert max(len(c) for c in calls) <= MatchCoalescer.MAX_BATCH


def test_concurrent_pdq_requests_over_http(client: TestClient, auth: dict[str, str]) -> None:
    rng = random.Random(15)
    base = [rng.randbytes(32).hex() for _ in range(3)]
    r = client.post(
        "/v1/signals",
        headers=auth,
        json={
            "signals": [
                {"type": "pdq", "value": v, "quality": 90, "categories": ["csam"]} for v in base
            ]
        },
    )
    assert [i["status"] for i in r.json()["items"]] == ["created"] * 3, r.text
    ids = {v: i["id"] for v, i in zip(base, r.json()["items"], strict=True)}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = client.post(
            "/v1/match", headers=auth, json={"queries": [{"type": "pdq", "value": base[2]}]}
        )
        if r.json()["results"][0]["matches"]:
            break
        time.sleep(0.05)

    def ask(i: int) -> None:
        # Request i asks for 1-3 codes, each near one stored code at a distance it can check.
        wanted = [(base[(i + j) % 3], (i + j) % 9) for j in range(1 + i % 3)]
        queries = [{"type": "pdq", "value": _flip(v, d)} for v, d in wanted]
        got = client.post("/v1/match", headers=auth, json={"queries": queries}).json()
        for k, ((v, d), res) in enumerate(zip(wanted, got["results"], strict=True)):
            assert res["index"] == k and res["status"] == "ok"
            assert [(m["id"], m["distance"]) for m in res["matches"]] == [(ids[v], d)]

    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            ask(i)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
