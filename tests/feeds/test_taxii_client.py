"""The OASIS taxii2-client, as it is, against a live node holding a few thousand signals."""

from __future__ import annotations

import pytest
import stix2
from taxii2client.v21 import Server, as_pages

from app.services import signals
from tests.feeds.helpers import hexof


def _seed(node, n: int, tlp: str, tag: str, peers: list[str] | None = None) -> list[str]:
    items = [
        {
            "type": "sha256",
            "value": hexof(f"{tag}{i}"),
            "categories": ["csam"] if i % 3 else ["ncii"],
            "audience": {"tlp": tlp, **({"peers": peers} if peers else {})},
        }
        for i in range(n)
    ]
    ids: list[str] = []
    for start in range(0, n, 1000):
        result = signals.submit_batch(node, items[start : start + 1000], None)
        assert result.created == len(items[start : start + 1000])
        ids += [r.id for r in result.items if r.id]
    return ids


# The few-thousand-signal walk runs on SQLite only, to keep the suite fast; the paging code is the
# same on PostgreSQL and is covered there by tests/feeds/test_feeds_api.py.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_taxii2_client_pages_every_object_once(live):
    node = live.node
    clear = _seed(node, 3000, "clear", "c")
    _seed(node, 50, "red", "r")
    _seed(node, 50, "amber", "a", ["peer.example"])
    green = _seed(node, 50, "green", "g")
    key = live.key("feed")

    server = Server(f"{live.url}/taxii2/", user="consumer", password=key)
    (root,) = server.api_roots
    by_alias = {c._raw["alias"]: c for c in root.collections}
    assert {"all", "ncii", "csam", "grooming"} <= set(by_alias)
    everything = by_alias["all"]

    seen: list[str] = []
    late: list[str] = []
    for n, envelope in enumerate(as_pages(everything.get_objects, per_request=400)):
        objects = envelope.get("objects", [])
        seen += [o["x_signet_record"]["id"] for o in objects]
        if n == 0:
            late = _seed(node, 30, "clear", "late")  # inserted while paging: must come at the end
        if n == 0:
            for o in objects[:50]:
                stix2.parse(o, allow_custom=True, version="2.1")
    assert len(seen) == len(set(seen)), "an object was repeated"
    assert set(seen) == set(clear) | set(late), "an object was missing or out of audience"
    assert not set(seen) & set(green)

    ncii = [
        o["id"]
        for env in as_pages(by_alias["ncii"].get_objects, per_request=500)
        for o in env.get("objects", [])
    ]
    assert len(ncii) == len(set(ncii)) == 1000 + 10  # every third of each batch


def test_taxii2_client_bearer_member_sees_green(live):
    import requests

    node = live.node
    green = _seed(node, 5, "green", "g")
    _seed(node, 5, "red", "r")
    key = live.key("feed", member=True)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    r = session.get(
        f"{live.url}/taxii2/signet/collections/",
        headers={"Accept": "application/taxii+json;version=2.1"},
    )
    cid = next(c["id"] for c in r.json()["collections"] if c["alias"] == "all")
    objs = session.get(f"{live.url}/taxii2/signet/collections/{cid}/objects/").json()["objects"]
    assert {o["x_signet_record"]["id"] for o in objs} == set(green)
