"""Threshold OPRF across nodes in one process: a member node and three key holders (2-of-3).

The member's database is `db_url` (SQLite and PostgreSQL); the holders use SQLite files.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.client import NodeClient
from app.crypto import oprf
from app.crypto import oprf_threshold as th
from app.main import create_app
from app.services import apikeys
from app.services.node import open_node
from app.services.oprf import HeldShare, OprfService, load_epoch_file, write_ceremony
from app.settings import load_settings
from app.signals.identifiers import hash_identifiers_oprf, oprf_message
from tests.federation_int.conftest import TNode, mesh

HOLDERS = ["h1.test", "h2.test", "h3.test"]
EPOCH = "oprf-e1"
EMAIL = "Jane.Doe+promo@GoogleMail.com"


@pytest.fixture
def fed(tmp_path: Path, db_url: str) -> Iterator[dict[str, Any]]:
    files = write_ceremony(EPOCH, HOLDERS, 2, tmp_path / "ceremony")
    stack = ExitStack()
    registry: dict[str, httpx.Client] = {}
    nodes: dict[str, TNode] = {}
    for i, origin in enumerate(["a.test", *HOLDERS]):
        extra: dict[str, Any] = (
            {"oprf_epoch_files": str(files[0]), "oprf_key_limit": 50}
            if origin == "a.test"
            else {"oprf_share_files": str(tmp_path / "ceremony" / f"{EPOCH}.{origin}.share.json")}
        )
        settings = load_settings(
            origin=origin,
            data_dir=tmp_path / origin,
            database_url=db_url if i == 0 else f"sqlite:///{tmp_path / origin}.db",
            public_url=f"http://{origin}",
            background=False,
            **extra,
        )
        node = open_node(settings)
        stack.callback(node.db.dispose)
        app = create_app(settings, node=node, peer_clients=registry)
        client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
        registry[f"http://{origin}"] = client
        admin = apikeys.create(node, "admin", ["admin"]).key
        platform = apikeys.create(node, "platform", ["submit", "match"]).key
        nodes[origin] = TNode(
            origin,
            f"http://{origin}",
            node,
            client,
            {"Authorization": f"Bearer {admin}"},
            {"Authorization": f"Bearer {platform}"},
        )
    for h in HOLDERS:
        mesh(nodes["a.test"], nodes[h])
    yield {"nodes": nodes, "epoch": load_epoch_file(files[0]), "dir": tmp_path / "ceremony"}
    stack.close()


def _service(n: TNode) -> OprfService:
    s: OprfService = n.client.app.state.oprf  # type: ignore[attr-defined]
    return s


def _evaluate(n: TNode) -> Any:
    def call(epoch: str, blinded: list[str]) -> dict[str, Any]:
        r = n.client.post(
            "/v1/identifiers/oprf/evaluate",
            headers=n.platform,
            json={"epoch": epoch, "blinded": blinded},
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    return call


def _whole_key(fed: dict[str, Any]) -> int:
    epoch = fed["epoch"]
    shares = {h: _service(fed["nodes"][h]).shares[EPOCH].share for h in HOLDERS[:2]}
    lam = th.lagrange_at_zero([epoch.holder(h).index for h in HOLDERS[:2]])
    return sum(lam[epoch.holder(h).index] * s for h, s in shares.items()) % oprf.ORDER


def test_identifier_through_member_matches_the_whole_key_output(fed: dict[str, Any]) -> None:
    a = fed["nodes"]["a.test"]
    epoch = fed["epoch"]
    values = hash_identifiers_oprf("email", [EMAIL, "janedoe@gmail.com"], epoch, _evaluate(a))
    # Same normalised identifier -> same value; it is the RFC 9497 VOPRF output under k.
    assert values[0] == values[1]
    want = oprf.evaluate(_whole_key(fed), oprf_message("email", "janedoe@gmail.com"))
    assert values[0] == want[:32].hex()
    # The value works as an identifier signal with the epoch as key_id.
    sid = a.submit(type="email", value=values[0], key_id=EPOCH)
    a.refresh()
    r = a.client.post(
        "/v1/match",
        headers=a.platform,
        json={"queries": [{"type": "email", "value": values[1], "key_id": EPOCH}]},
    )
    assert [m["id"] for m in r.json()["results"][0]["matches"]] == [sid]


def test_holders_count_each_member_in_their_log_and_publish_the_epoch(
    fed: dict[str, Any],
) -> None:
    a = fed["nodes"]["a.test"]
    hash_identifiers_oprf("email", ["x@example.org"] * 3, fed["epoch"], _evaluate(a))
    tallies = [e for h in HOLDERS for e in fed["nodes"][h].log_entries("oprf_tally")]
    # Two holders (the threshold) were asked, each counted 3 evaluations for a.test.
    assert sorted((e["member"], e["epoch"], e["count"]) for e in tallies) == [
        ("a.test", EPOCH, 3),
        ("a.test", EPOCH, 3),
    ]
    for h in HOLDERS:
        n = fed["nodes"][h]
        keys = n.log_entries("oprf_keys")
        assert keys and keys[-1]["oprf"]["holds"] == [EPOCH]
        desc = n.client.get("/.well-known/signet").json()
        assert desc["oprf"]["epochs"][0] == fed["epoch"].to_json()
    assert a.log_entries("oprf_keys")[-1]["oprf"]["current"] == EPOCH


def test_a_holder_with_a_wrong_share_is_refused_and_named(fed: dict[str, Any]) -> None:
    a = fed["nodes"]["a.test"]
    h1 = _service(fed["nodes"]["h1.test"])
    held = h1.shares[EPOCH]
    h1.shares[EPOCH] = HeldShare(held.epoch, held.holder, (held.share + 1) % oprf.ORDER)
    blinded = [base64.b64encode(oprf.blind(b"email:x@example.org")[1]).decode()]
    r = a.client.post(
        "/v1/identifiers/oprf/evaluate", headers=a.platform, json={"blinded": blinded}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["holder"] for p in body["partials"]] == ["h2.test", "h3.test"]
    assert body["refused_holders"][0]["holder"] == "h1.test"
    assert "bad partial evaluation" in body["refused_holders"][0]["reason"]
    # And the client's own check catches the bad holder even if a node passed it on.
    values = hash_identifiers_oprf("email", ["x@example.org"], fed["epoch"], _evaluate(a))
    want = oprf.evaluate(_whole_key_from(fed, ["h2.test", "h3.test"]), b"email:x@example.org")
    assert values == [want[:32].hex()]
    # With two holders bad, the member answers 502 naming both.
    h2 = _service(fed["nodes"]["h2.test"])
    h2.shares[EPOCH] = HeldShare(held.epoch, "h2.test", 12345)
    r = a.client.post(
        "/v1/identifiers/oprf/evaluate", headers=a.platform, json={"blinded": blinded}
    )
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/problem+json"
    assert {x["holder"] for x in r.json()["holders"]} == {"h1.test", "h2.test"}


def _whole_key_from(fed: dict[str, Any], holders: list[str]) -> int:
    epoch = fed["epoch"]
    lam = th.lagrange_at_zero([epoch.holder(h).index for h in holders])
    return (
        sum(
            lam[epoch.holder(h).index] * _service(fed["nodes"][h]).shares[EPOCH].share
            for h in holders
        )
        % oprf.ORDER
    )


def test_bad_items_are_refused_per_item_and_the_rest_served(fed: dict[str, Any]) -> None:
    a = fed["nodes"]["a.test"]
    good = base64.b64encode(oprf.blind(b"email:x@example.org")[1]).decode()
    identity = base64.b64encode(bytes(32)).decode()
    r = a.client.post(
        "/v1/identifiers/oprf/evaluate",
        headers=a.platform,
        json={"blinded": [good, identity, "not base64!", good]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == [0, 3]
    assert [x["field"] for x in body["refused"]] == ["blinded[1]", "blinded[2]"]
    assert all(len(p["evaluated"]) == 2 for p in body["partials"])
    r = a.client.post(
        "/v1/identifiers/oprf/evaluate", headers=a.platform, json={"blinded": [good] * 1001}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "blinded"


def test_limits_give_429(fed: dict[str, Any]) -> None:
    a = fed["nodes"]["a.test"]
    good = base64.b64encode(oprf.blind(b"email:x@example.org")[1]).decode()
    # Per API key at the member: 50 per minute.
    r = a.client.post(
        "/v1/identifiers/oprf/evaluate", headers=a.platform, json={"blinded": [good] * 51}
    )
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert r.headers["content-type"] == "application/problem+json"
    # Per member node at the holders: shrink every holder's budget to 5.
    for h in HOLDERS:
        svc = _service(fed["nodes"][h])
        svc.holder_limits = type(svc.holder_limits)(5)
    other = apikeys.create(a.node, "other", ["match"]).key
    r = a.client.post(
        "/v1/identifiers/oprf/evaluate",
        headers={"Authorization": f"Bearer {other}"},
        json={"blinded": [good] * 6},
    )
    assert r.status_code == 429, r.text
    assert {x["holder"] for x in r.json()["holders"]} == set(HOLDERS)
    # Nothing over the limit was evaluated, so nothing was counted.
    assert not any(fed["nodes"][h].log_entries("oprf_tally") for h in HOLDERS)


def test_holder_endpoint_refuses_unsigned_and_unknown_peers(fed: dict[str, Any]) -> None:
    h1 = fed["nodes"]["h1.test"]
    body = json.dumps({"epoch": EPOCH, "blinded": []})
    r = h1.client.post("/federation/v1/oprf/evaluate", content=body)
    assert r.status_code in (400, 401)
    assert r.headers["content-type"] == "application/problem+json"


def test_cli_client_helper_against_the_member(fed: dict[str, Any]) -> None:
    a = fed["nodes"]["a.test"]
    transport = a.client._transport  # the in-process app behind the TestClient
    with NodeClient(a.url, a.platform["Authorization"][7:], transport=transport) as c:
        listing = c.oprf_epochs()
        assert listing["current"] == EPOCH
        epoch = th.Epoch.from_json(listing["epochs"][0])
        values = hash_identifiers_oprf("phone", ["+44 7700 900123"], epoch, c.oprf_evaluate)
    assert len(values[0]) == 64
