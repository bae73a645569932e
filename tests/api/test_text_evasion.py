"""Keyword matching through the API resists look-alike letters, invisible characters,
combining marks and spaced letters (keyword fold 2), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.signals.test_sig_textfold import EVASIONS, ORDINARY


def _match(client: Any, auth: dict[str, str], *queries: dict[str, Any]) -> list[list[str]]:
    r = client.post("/v1/match", headers=auth, json={"queries": list(queries)})
    assert r.status_code == 200, r.text
    return [[m["id"] for m in res["matches"]] for res in r.json()["results"]]


def test_evasive_text_matches_and_ordinary_text_does_not(client: Any, auth: dict[str, str]) -> None:
    signals = [{"type": "keyword", "value": k, "categories": ["grooming"]} for k in EVASIONS]
    r = client.post("/v1/signals", headers=auth, json={"signals": signals})
    ids = dict(zip(EVASIONS, (i["id"] for i in r.json()["items"]), strict=True))
    for keyword, variants in EVASIONS.items():
        queries = [{"type": "text", "value": f"hey, {v}?"} for v in variants]
        queries.append({"type": "keyword", "value": variants[0]})
        assert _match(client, auth, *queries) == [[ids[keyword]]] * len(queries), keyword
    spaced = {"type": "text", "value": "send n u d e s now, or n.u.d.e.s"}
    assert _match(client, auth, spaced) == [[ids["nudes"]]]
    ordinary = [w for w in ORDINARY if w not in ("cheese", "pizza")]
    assert _match(client, auth, {"type": "text", "value": " ".join(ordinary)}) == [[]]


def test_leetspeak_only_when_asked(client: Any, auth: dict[str, str]) -> None:
    r = client.post(
        "/v1/signals",
        headers=auth,
        json={"signals": [{"type": "keyword", "value": "nudes", "categories": ["grooming"]}]},
    )
    sid = r.json()["items"][0]["id"]
    plain = {"type": "text", "value": "send NUD3$ pls"}
    assert _match(client, auth, plain, {**plain, "leet": True}) == [[], [sid]]
    exact = {"type": "keyword", "value": "nud3s", "leet": True}
    assert _match(client, auth, exact) == [[sid]]
    got = client.get(f"/v1/signals/{sid}", headers=auth).json()
    assert got["value"] == "nudes" and got["attrs"] == {"fold": "2"}
