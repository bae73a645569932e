"""Observation 1: `/v1/match` must not be a hash oracle, a loop-stalling load or a log filler.

On SQLite and PostgreSQL (the `client` fixture's database).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from app.main import create_app
from app.services.node import Node
from app.settings import Settings
from tests.hostile.helpers import PDQ, pdq_flip, serve_in_thread


def submit(client: Any, auth: dict[str, str], signals: list[dict[str, Any]]) -> list[str]:
    r = client.post("/v1/signals", headers=auth, json={"signals": signals})
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 0, r.json()["items"][0]
    return [item["id"] for item in r.json()["items"]]


def pdq_signal(value: str, tlp: str = "red") -> dict[str, Any]:
    return {
        "type": "pdq",
        "value": value,
        "quality": 90,
        "categories": ["csam"],
        "audience": {"tlp": tlp},
    }


def test_a_wide_threshold_is_refused_whole(client: Any, auth: dict[str, str]) -> None:
    """The bit-by-bit oracle needs threshold 256; above 48 the request gets no answer at all."""
    submit(client, auth, [pdq_signal(pdq_flip(PDQ, [3, 70]))])
    queries = [
        {"type": "pdq", "value": "0" * 64, "threshold": 40},
        {"type": "pdq", "value": "0" * 64, "threshold": 256},
    ]
    r = client.post("/v1/match", headers=auth, json={"queries": queries})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [
        {"field": "queries[1].threshold", "reason": r.json()["errors"][0]["reason"]}
    ]
    assert "48" in r.json()["errors"][0]["reason"]
    assert "distance" not in r.text  # nothing about any stored code leaks with the refusal
    ok = client.post(
        "/v1/match",
        headers=auth,
        json={"queries": [{"type": "pdq", "value": PDQ, "threshold": 48}]},
    )
    assert ok.status_code == 200
    assert [m["distance"] for m in ok.json()["results"][0]["matches"]] == [2]


def test_matches_per_query_are_capped_closest_first(client: Any, auth: dict[str, str]) -> None:
    signals = [pdq_signal(pdq_flip(PDQ, [*range(i % 20), 100 + i])) for i in range(130)]
    submit(client, auth, signals)
    r = client.post("/v1/match", headers=auth, json={"queries": [{"type": "pdq", "value": PDQ}]})
    assert r.status_code == 200
    result = r.json()["results"][0]
    assert len(result["matches"]) == 100 and result["truncated"] is True
    distances = [m["distance"] for m in result["matches"]]
    assert distances == sorted(distances) and max(distances) <= 20
    one = client.post(
        "/v1/match", headers=auth, json={"queries": [{"type": "pdq", "value": PDQ, "threshold": 1}]}
    ).json()["results"][0]
    assert len(one["matches"]) == 7 and one["truncated"] is False  # i = 0, 20, ..., 120


def test_report_seen_once_per_key_and_signal(
    client: Any, auth: dict[str, str], make_key: Callable[..., dict[str, str]]
) -> None:
    (sid,) = submit(client, auth, [pdq_signal(PDQ, "green")])
    query = {"queries": [{"type": "pdq", "value": PDQ, "report_seen": True}] * 3}
    for _ in range(4):
        assert client.post("/v1/match", headers=auth, json=query).status_code == 200
    signal = client.get(f"/v1/signals/{sid}", headers=auth).json()
    assert signal["feedback"] == {"seen": 1}
    other = make_key("match")
    assert client.post("/v1/match", headers=other, json=query).status_code == 200
    signal = client.get(f"/v1/signals/{sid}", headers=auth).json()
    assert signal["feedback"] == {"seen": 2}


def test_heavy_matches_leave_the_event_loop_free(
    settings: Settings, node: Node, make_key: Callable[..., dict[str, str]], client: Any
) -> None:
    """While matches are still running, /healthz and another key's match are answered.

    The PDQ search is held open by a gate the test controls, standing in for a slow search;
    the test checks the order of completions only. On the old code the match ran on the event
    loop, so nothing else was answered until the gate opened (the client gave up first).
    """
    flooder, other = make_key("match", "submit"), make_key("match")
    submit(client, flooder, [pdq_signal(PDQ)])
    entered = threading.Semaphore(0)
    release = threading.Event()
    search = node.index.pdq

    def gated_pdq(codes: np.ndarray, threshold: int, now: float) -> Any:
        if threshold == 7:  # only the flooder's queries wait at the gate
            entered.release()
            release.wait(60)
        return search(codes, threshold, now)

    node.index.pdq = gated_pdq  # type: ignore[method-assign]
    events: list[str] = []
    heavy = {"queries": [{"type": "pdq", "value": PDQ, "threshold": 7}]}
    light = {"queries": [{"type": "pdq", "value": PDQ}]}
    with serve_in_thread(create_app(settings, node=node)) as base:

        def flood(i: int) -> None:
            with httpx.Client(base_url=base, timeout=90) as c:
                r = c.post("/v1/match", headers=flooder, json=heavy)
                events.append(f"heavy{i}:{r.status_code}")

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        assert entered.acquire(timeout=30)  # a heavy match is inside the search now
        try:
            with httpx.Client(base_url=base, timeout=10) as c:
                assert c.get("/healthz").status_code == 200
                events.append("healthz")
                r = c.post("/v1/match", headers=other, json=light)
                assert r.status_code == 200 and len(r.json()["results"][0]["matches"]) == 1
                events.append("other-key")
        except httpx.TimeoutException:
            events.append("timeout")
        finally:
            release.set()
            for t in threads:
                t.join(60)
    assert events[:2] == ["healthz", "other-key"], events
    assert sorted(events[2:]) == [f"heavy{i}:200" for i in range(6)]
