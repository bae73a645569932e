"""Whole domains: a `domain` signal covers its subdomains and URLs on them (Public Suffix List),
unless published with `subdomains: false`; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import InvalidSignal
from app.signals.domains import PSL_VERSION, covering_domains, registrable_domain
from app.signals.match_index import IndexedSignal, MatchIndex
from app.signals.types import canonicalize


def _ids(client: Any, auth: dict[str, str], *queries: dict[str, Any]) -> list[list[str]]:
    r = client.post("/v1/match", headers=auth, json={"queries": list(queries)})
    assert r.status_code == 200, r.text
    return [[m["id"] for m in res["matches"]] for res in r.json()["results"]]


def test_domain_signal_catches_subdomains_and_urls(client: Any, auth: dict[str, str]) -> None:
    signals = [
        {"type": "domain", "value": "bad-site.example", "categories": ["csam"]},
        {"type": "domain", "value": "only.other.example", "categories": ["csam"],
         "subdomains": False},
        {"type": "domain", "value": "someone.github.io", "categories": ["csam"]},
    ]  # fmt: skip
    r = client.post("/v1/signals", headers=auth, json={"signals": signals})
    assert r.status_code == 200, r.text
    whole, exact, gh = [i["id"] for i in r.json()["items"]]
    got = _ids(
        client,
        auth,
        {"type": "url", "value": "https://cdn.files.Bad-Site.example/a/b.jpg"},
        {"type": "domain", "value": "mirror.bad-site.example"},
        {"type": "domain", "value": "bad-site.example"},
        {"type": "domain", "value": "notbad-site.example"},
        {"type": "url", "value": "http://x.only.other.example/"},
        {"type": "domain", "value": "only.other.example"},
        {"type": "url", "value": "https://someone.github.io/page"},
        {"type": "url", "value": "https://other.github.io/page"},
    )
    assert got == [[whole], [whole], [whole], [], [], [exact], [gh], []]
    body = client.get(f"/v1/signals/{whole}", headers=auth).json()
    assert body["attrs"] == {"registrable": "bad-site.example", "subdomains": True}


def test_public_suffix_cannot_cover_subdomains(client: Any, auth: dict[str, str]) -> None:
    bad = {"type": "domain", "value": "github.io", "categories": ["csam"]}
    r = client.post("/v1/signals", headers=auth, json={"signals": [bad]})
    item = r.json()["items"][0]
    assert item["status"] == "rejected" and item["error"]["field"] == "signals[0].subdomains"
    r = client.post("/v1/signals", headers=auth, json={"signals": [{**bad, "subdomains": False}]})
    assert r.json()["items"][0]["status"] == "created"


def test_url_signals_keep_the_registrable_domain() -> None:
    c = canonicalize("url", "https://a.b.example.co.uk/x")
    assert c.extra["domain"] == "a.b.example.co.uk"
    assert c.extra["registrable"] == "example.co.uk"
    assert "registrable" not in canonicalize("url", "http://10.0.0.1/x").extra
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("url", "https://a.example/", subdomains=True)
    assert exc.value.field == "subdomains"


def test_psl_is_the_bundled_snapshot() -> None:
    assert PSL_VERSION.count(".") >= 3  # x.y.z.YYYYMMDD: the list's date
    assert registrable_domain("www.example.com") == "example.com"
    assert covering_domains("a.b.example.co.uk") == [
        "a.b.example.co.uk",
        "b.example.co.uk",
        "example.co.uk",
    ]
    assert covering_domains("co.uk") == []


def test_domain_signals_published_before_the_option_stay_exact() -> None:
    index = MatchIndex()  # no `subdomains` attr: what older nodes published
    index.apply([IndexedSignal(1, "domain", "domain:old.example", "old.example", 2e9, True)])
    assert index.domains_over("www.old.example", 1.0) == []
    assert index.exact("domain:old.example", 1.0) == [1]
