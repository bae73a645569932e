"""The fast path for plain upload-time matches (app/api/fastmatch.py).

It must answer exactly what the route answers, byte for byte, and leave every other request,
above all every request that will be refused, to the route.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api import fastmatch
from app.api.fairness import MatchCoalescer
from app.main import create_app
from app.observability import HTTP_REQUESTS
from app.services.node import Node
from app.settings import Settings

MD5 = "0123456789abcdef0123456789abcdef"


def _pdq(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _flip(code: str, bits: int) -> str:
    value = int(code, 16) ^ ((1 << bits) - 1)
    return f"{value:064x}"


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per /v1/match request the middleware saw: True if it answered it itself."""
    seen: list[bool] = []
    real = fastmatch.MatchFastPath._answer

    async def spy(self: fastmatch.MatchFastPath, scope: Any, body: bytes) -> bytes | None:
        out = await real(self, scope, body)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(fastmatch.MatchFastPath, "_answer", spy)
    return seen


@pytest.fixture
def stored(client: TestClient, auth: dict[str, str]) -> dict[str, str]:
    pdq = _pdq(random.Random(5))
    result = client.post(
        "/v1/signals",
        json={
            "signals": [
                {"type": "md5", "value": MD5, "categories": ["csam"]},
                {"type": "pdq", "value": pdq, "categories": ["csam"], "quality": 90},
            ]
        },
        headers=auth,
    )
    assert result.json()["created"] == 2, result.text
    return {"md5": MD5, "pdq": pdq}


def _through_route(client: TestClient, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Any:
    """The same request, with the fast path told to decline it."""
    with monkeypatch.context() as m:
        m.setattr(fastmatch, "plain_match", lambda node, queries: False)
        return client.post("/v1/match", **kw)


def _same(a: Any, b: Any) -> None:
    assert (a.status_code, a.content) == (b.status_code, b.content)
    drop = {"x-request-id"}
    assert {k: v for k, v in a.headers.items() if k not in drop} == {
        k: v for k, v in b.headers.items() if k not in drop
    }


@pytest.mark.parametrize(
    "queries",
    [
        [{"type": "md5", "value": "md5"}],  # a hit (placeholders filled in below)
        [{"type": "md5", "value": MD5.upper()}],  # the same digest in capitals
        [{"type": "md5", "value": "f" * 32}],  # a miss
        [{"type": "pdq", "value": "pdq8"}],  # a hit 8 bits away
        [{"type": "pdq", "value": "pdq8", "threshold": 4}],  # too far for its threshold
        [{"type": "pdq", "value": "pdq"}, {"type": "md5", "value": "md5"}],
    ],
)
def test_answers_what_the_route_answers(
    client: TestClient,
    auth: dict[str, str],
    stored: dict[str, str],
    answered: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    queries: list[dict[str, Any]],
) -> None:
    fill = {"md5": stored["md5"], "pdq": stored["pdq"], "pdq8": _flip(stored["pdq"], 8)}
    body = {"queries": [{**q, "value": fill.get(q["value"], q["value"])} for q in queries]}
    client.post("/v1/match", json=body, headers=auth)  # the first request caches the key
    answered.clear()
    fast = client.post("/v1/match", json=body, headers=auth)
    assert answered == [True]
    slow = _through_route(client, monkeypatch, json=body, headers=auth)
    assert answered == [True, False]
    assert fast.status_code == 200
    _same(fast, slow)


def _refusals(auth: dict[str, str], read_only: dict[str, str]) -> Iterator[tuple[str, Any]]:
    md5 = {"queries": [{"type": "md5", "value": MD5}]}
    yield "no key", {"json": md5}
    yield "unknown key", {"json": md5, "headers": {"Authorization": "Bearer nope"}}
    yield "no match scope", {"json": md5, "headers": read_only}
    yield "basic auth", {"json": md5, "headers": {"Authorization": "Basic eDp5"}}
    yield "not JSON", {"content": b"{", "headers": {**auth, "Content-Type": "application/json"}}
    yield "not an object", {"json": [1], "headers": auth}
    two_types = [("Content-Type", "text/plain"), ("Content-Type", "application/json")]
    two_keys = [("Authorization", "Bearer nope"), *auth.items()]
    raw = b'{"queries": [{"type": "md5", "value": "' + MD5.encode() + b'"}]}'
    yield "two content types", {"content": raw, "headers": [*auth.items(), *two_types]}
    yield "two keys", {"content": raw, "headers": [*two_keys, ("Content-Type", "application/json")]}
    deep = b"[" * 100_000 + b"]" * 100_000  # deeper than the JSON parser's recursion limit
    yield (
        "nested too deep",
        {"content": deep, "headers": {**auth, "Content-Type": "application/json"}},
    )
    yield "no queries", {"json": {}, "headers": auth}
    yield "an extra field", {"json": {**md5, "x": 1}, "headers": auth}
    yield (
        "text/plain",
        {"content": b'{"queries": []}', "headers": {**auth, "Content-Type": "text/plain"}},
    )
    yield "bad md5", {"json": {"queries": [{"type": "md5", "value": "xyz"}]}, "headers": auth}
    yield (
        "too wide",
        {
            "json": {"queries": [{"type": "pdq", "value": "0" * 64, "threshold": 200}]},
            "headers": auth,
        },
    )


def test_refusals_are_the_routes(
    client: TestClient,
    make_key: Callable[..., dict[str, str]],
    auth: dict[str, str],
    answered: list[bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_only = make_key("read")
    client.post("/v1/match", json={"queries": [{"type": "md5", "value": MD5}]}, headers=auth)
    client.get("/v1/signals", headers=read_only)  # cached too: the scope check is from memory
    for why, kw in _refusals(auth, read_only):
        answered.clear()
        a = client.post("/v1/match", **kw)
        assert answered == [False], why
        b = _through_route(client, monkeypatch, **kw)
        _same(a, b)
        assert a.status_code in (400, 401, 403, 415, 422) or a.json()["results"][0]["status"] != (
            "ok"
        ), why


def test_a_narrow_node_keeps_its_limits(
    make_settings: Callable[..., Settings], answered: list[bool]
) -> None:
    """A node whose widest threshold is below the default, or whose batches are smaller than a
    plain request, refuses as before: such requests never join a combined search, so they
    cannot fail one either."""
    from app.services import apikeys
    from app.services.node import open_node

    settings = make_settings(max_pdq_threshold=16, max_batch=2)
    node = open_node(settings)
    try:
        key = {"Authorization": f"Bearer {apikeys.create(node, 'p', ['match']).key}"}
        with TestClient(create_app(settings, node=node), raise_server_exceptions=False) as c:
            ok = {"type": "pdq", "value": "0" * 64}
            c.post("/v1/match", json={"queries": [ok]}, headers=key)
            answered.clear()
            wide = c.post("/v1/match", json={"queries": [{**ok, "threshold": 20}]}, headers=key)
            assert wide.status_code == 400, wide.text
            many = c.post("/v1/match", json={"queries": [ok] * 3}, headers=key)
            assert many.status_code == 400, many.text
            assert answered == [False, False]
            plain = c.post("/v1/match", json={"queries": [ok, {**ok, "threshold": 9}]}, headers=key)
            assert plain.status_code == 200 and answered[-1] is True
    finally:
        node.db.dispose()
    assert not MatchCoalescer.eligible([{"type": "pdq", "value": "0" * 64, "threshold": 20}], 16)
    assert not MatchCoalescer.eligible([{"type": "md5", "value": MD5}] * 3, 31, 2)


def test_large_bodies_go_to_the_route(
    client: TestClient, auth: dict[str, str], answered: list[bool]
) -> None:
    """Only small bodies are parsed ahead of the route (a refused one is parsed twice): a plain
    request padded past the bound is answered by the route, the same way."""
    body = {"queries": [{"type": "md5", "value": MD5}]}
    client.post("/v1/match", json=body, headers=auth)
    small = json.dumps(body).encode()
    padded = small[:-1] + b" " * fastmatch.MAX_PLAIN_BODY + b"}"
    headers = {**auth, "Content-Type": "application/json"}
    answered.clear()
    a = client.post("/v1/match", content=small, headers=headers)
    b = client.post("/v1/match", content=padded, headers=headers)
    assert answered == [True, False]
    assert (a.status_code, a.content) == (b.status_code, b.content) == (200, a.content)


def test_metrics_name_the_route(
    client: TestClient, auth: dict[str, str], answered: list[bool]
) -> None:
    body = {"queries": [{"type": "md5", "value": MD5}]}
    client.post("/v1/match", json=body, headers=auth)
    counter = HTTP_REQUESTS.labels("POST", "/v1/match", "200")
    before = counter._value.get()
    answered.clear()
    assert client.post("/v1/match", json=body, headers=auth).status_code == 200
    assert answered == [True]
    assert counter._value.get() == before + 1


def test_an_oversized_body_is_still_refused(
    make_settings: Callable[..., Settings], node: Node, answered: list[bool]
) -> None:
    """Read in chunks with no Content-Length, a body over the limit is refused with 413 by the
    outer body limit, before the fast path could parse it."""
    settings = make_settings(max_body_bytes=1024)
    with TestClient(create_app(settings, node=node), raise_server_exceptions=False) as c:

        def chunks() -> Iterator[bytes]:
            yield b'{"queries": ['
            for _ in range(100):
                yield b'{"type": "md5", "value": "' + MD5.encode() + b'"},'
            yield b"]}"

        r = c.post("/v1/match", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert answered == []
