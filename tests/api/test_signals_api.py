"""The platform API end to end in one process, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from typing import Any

PDQ = "f" * 60 + "0000"


def pdq_with_flips(base: str, bits: int) -> str:
    n = int(base, 16) ^ ((1 << bits) - 1)
    return f"{n:064x}"


def submit(client: Any, auth: dict[str, str], *signals: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/signals", headers=auth, json={"signals": list(signals)})
    assert r.status_code == 200, r.text
    return r.json()


def test_batch_mixes_good_and_bad_items(client: Any, auth: dict[str, str]) -> None:
    body = submit(
        client,
        auth,
        {"type": "pdq", "value": PDQ, "quality": 90, "categories": ["csam"]},
        {
            "type": "email",
            "value": "someone@example.org",
            "key_id": "fed",
            "categories": ["grooming"],
        },
        {"type": "md5", "value": "0" * 32, "categories": ["nope"]},
        {"type": "keyword", "value": "x", "categories": ["grooming"], "surprise": 1},
        {"type": "warp", "value": "x", "categories": ["grooming"]},
        "not an object",
    )
    statuses = [i["status"] for i in body["items"]]
    assert statuses == ["created", "rejected", "rejected", "rejected", "rejected", "rejected"]
    fields = [i["error"]["field"] for i in body["items"][1:]]
    assert fields == [
        "signals[1].value",
        "signals[2].categories[0]",
        "signals[3].surprise",
        "signals[4].type",
        "signals[5]",
    ]
    # The raw identifier is never echoed back.
    assert "someone@example.org" not in str(body)
    assert body["created"] == 1 and body["rejected"] == 5


def test_resubmission_is_idempotent(client: Any, auth: dict[str, str]) -> None:
    item = {"type": "md5", "value": "AB" * 16, "categories": ["csam"]}
    first = submit(client, auth, item, dict(item, value="ab" * 16))
    assert [i["status"] for i in first["items"]] == ["created", "duplicate"]
    again = submit(client, auth, item)
    assert again["items"][0] == {**first["items"][0], "status": "duplicate"}


def test_match_retract_and_feedback(client: Any, auth: dict[str, str]) -> None:
    sid = submit(
        client, auth, {"type": "pdq", "value": PDQ, "quality": 80, "categories": ["csam"]}
    )["items"][0]["id"]
    near = pdq_with_flips(PDQ, 5)
    far = pdq_with_flips(PDQ, 40)
    r = client.post(
        "/v1/match",
        headers=auth,
        json={"queries": [{"type": "pdq", "value": near}, {"type": "pdq", "value": far}]},
    )
    results = r.json()["results"]
    assert [(m["id"], m["distance"]) for m in results[0]["matches"]] == [(sid, 5)]
    assert results[1]["matches"] == []
    r = client.post("/v1/feedback", headers=auth, json={"signal": sid, "verdict": "true_positive"})
    assert r.status_code == 200 and r.json()["feedback_status"] == "confirmed"
    r = client.post(f"/v1/signals/{sid}/retract", headers=auth, json={"reason": "mistake"})
    assert r.status_code == 200 and r.json()["status"] == "retracted"
    r = client.post("/v1/match", headers=auth, json={"queries": [{"type": "pdq", "value": near}]})
    assert r.json()["results"][0]["matches"] == []
    got = client.get(f"/v1/signals/{sid}", headers=auth).json()
    assert got["feedback"] == {"true_positive": 1}
    assert got["record"]["signature"] and got["record"]["origin"] == "test.example"


def test_list_pages_with_a_stable_cursor(client: Any, auth: dict[str, str]) -> None:
    items = [
        {"type": "sha256", "value": secrets.token_hex(32), "categories": ["csam"]} for _ in range(7)
    ]
    ids = [i["id"] for i in submit(client, auth, *items)["items"]]
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 3, "type": "sha256"}
        if after:
            params["after"] = after
        page = client.get("/v1/signals", headers=auth, params=params).json()
        seen += [s["id"] for s in page["items"]]
        after = page["next"]
        if after is None:
            break
        # A signal added mid-walk appears after what was already listed, never before.
        submit(
            client, auth, {"type": "md5", "value": secrets.token_hex(16), "categories": ["csam"]}
        )
    assert seen == ids


def test_errors_are_problem_json(client: Any, auth: dict[str, str], make_key: Any) -> None:
    r = client.post(
        "/v1/signals",
        headers={**auth, "Content-Type": "application/json"},
        content=b'{"signals": [',
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    r = client.post("/v1/signals", json={"signals": []})
    assert r.status_code == 401 and r.json()["status"] == 401
    r = client.post("/v1/signals", headers=make_key("match"), json={"signals": []})
    assert r.status_code == 403
    too_many = [{"type": "md5", "value": "0" * 32, "categories": ["csam"]}] * 1001
    r = client.post("/v1/signals", headers=auth, json={"signals": too_many})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "signals"
    r = client.get("/v1/signals/nope", headers=auth)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = client.get("/v1/signals", headers=auth, params={"after": "garbage"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "after"


def test_health(client: Any) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["checks"]["migrations"] == "ok"
