"""The auditor API on SQLite and PostgreSQL: entries, proofs and checkpoints verify."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.crypto import merkle
from app.crypto.canonical import canonical_json
from app.crypto.checkpoint import open_checkpoint
from app.crypto.keys import VerifierKey
from app.services.node import Node


def b64(s: str) -> bytes:
    return base64.b64decode(s)


def checkpoint(client: Any, audit_auth: dict[str, str], node: Node) -> tuple[int, bytes]:
    r = client.get("/v1/log/checkpoint", headers=audit_auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    cp = open_checkpoint(r.text, VerifierKey.parse(node.verifier_key))
    return cp.size, cp.root_hash


def all_entries(client: Any, audit_auth: dict[str, str], size: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < size:
        r = client.get(
            "/v1/log/entries", headers=audit_auth, params={"start": len(out), "end": size}
        )
        assert r.status_code == 200, r.text
        out += r.json()
    return out


def test_entries_and_proofs_verify(
    client: Any, audit_auth: dict[str, str], node: Node, history: dict[str, list[str]]
) -> None:
    size, root = checkpoint(client, audit_auth, node)
    assert size >= 9  # audit key, auth key, 5 signals, 2 retractions, 1 feedback
    entries = all_entries(client, audit_auth, size)
    leaves = [merkle.leaf_hash(canonical_json(e["entry"])) for e in entries]
    assert [b64(e["leaf_hash"]) for e in entries] == leaves
    assert merkle.root_from_leaves(leaves) == root
    for index in range(size):
        for at in {index + 1, size}:
            r = client.get(
                "/v1/log/proof/inclusion", headers=audit_auth, params={"index": index, "size": at}
            )
            assert r.status_code == 200, r.text
            proof = [b64(h) for h in r.json()["hashes"]]
            merkle.verify_inclusion(
                leaves[index], index, at, proof, merkle.root_from_leaves(leaves[:at])
            )
    for a in range(1, size + 1):
        r = client.get(
            "/v1/log/proof/consistency", headers=audit_auth, params={"from": a, "to": size}
        )
        assert r.status_code == 200, r.text
        proof = [b64(h) for h in r.json()["hashes"]]
        merkle.verify_consistency(a, size, proof, merkle.root_from_leaves(leaves[:a]), root)


def test_restricted_records_are_only_committed(
    client: Any, audit_auth: dict[str, str], node: Node, history: dict[str, list[str]]
) -> None:
    size, _ = checkpoint(client, audit_auth, node)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in all_entries(client, audit_auth, size):
        by_kind.setdefault(e["entry"]["kind"], []).append(e["entry"])
    signals = by_kind["signal"]
    assert [("record" in s, s.get("tlp")) for s in signals] == [
        (True, None),
        (True, None),
        (False, "amber"),
        (False, "red"),
        (True, None),
    ]
    for s in signals[2:4]:
        assert set(s) == {"kind", "time", "commitment", "tlp"}
        assert len(s["commitment"]) == 64
    assert [("record" in r) for r in by_kind["retraction"]] == [True, False]
    text = json.dumps(by_kind)
    for uid in (history["ids"][2], history["ids"][3]):
        assert uid not in text  # not even the id of a restricted record is disclosed
    assert "salt" not in text


def test_signal_entries_with_proofs(
    client: Any, audit_auth: dict[str, str], node: Node, history: dict[str, list[str]]
) -> None:
    ids = history["ids"]
    for uid, kinds in [
        (ids[0], ["signal", "retraction"]),  # clear, retracted
        (ids[1], ["signal"]),
        (ids[3], ["signal", "retraction"]),  # red, retracted: commitments only
    ]:
        r = client.get(f"/v1/log/signals/{uid}", headers=audit_auth)
        assert r.status_code == 200, r.text
        body = r.json()
        cp = open_checkpoint(body["checkpoint"], VerifierKey.parse(node.verifier_key))
        assert cp.size == body["size"]
        assert [e["entry"]["kind"] for e in body["entries"]] == kinds
        for e in body["entries"]:
            leaf = merkle.leaf_hash(canonical_json(e["entry"]))
            proof = [b64(h) for h in e["inclusion_proof"]]
            merkle.verify_inclusion(leaf, e["index"], cp.size, proof, cp.root_hash)
    r = client.get("/v1/log/signals/nope", headers=audit_auth)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/log/entries", {"start": 5, "end": 5}, "end"),
        ("/v1/log/entries", {"start": 999, "end": 1000}, "start"),
        ("/v1/log/entries", {"start": -1, "end": 2}, "start"),
        ("/v1/log/proof/inclusion", {"index": 3, "size": 3}, "index"),
        ("/v1/log/proof/inclusion", {"index": 0, "size": 999}, "size"),
        ("/v1/log/proof/consistency", {"from": 0, "to": 2}, "from"),
        ("/v1/log/proof/consistency", {"from": 3, "to": 2}, "to"),
        ("/v1/log/proof/consistency", {"from": 1, "to": 999}, "to"),
        ("/v1/log/checkpoint", {"size": -1}, "size"),
        ("/v1/log/checkpoint", {"size": "x"}, "size"),  # not an int: 422, as everywhere
    ],
)
def test_bad_ranges_are_400(
    client: Any,
    audit_auth: dict[str, str],
    submit: Any,
    path: str,
    params: dict[str, Any],
    field: str,
) -> None:
    submit("clear", "clear", "clear")
    r = client.get(path, headers=audit_auth, params=params)
    assert r.status_code == (422 if params.get("size") == "x" else 400), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in json.dumps(r.json())


def test_scopes_and_checkpoints(
    client: Any, audit_auth: dict[str, str], auth: dict[str, str], make_key: Any, node: Node
) -> None:
    assert client.get("/v1/log/checkpoint").status_code == 401
    assert client.get("/v1/log/checkpoint", headers=auth).status_code == 403
    assert client.post("/v1/log/checkpoint", headers=audit_auth).status_code == 403
    r = client.post("/v1/log/checkpoint", headers=make_key("admin"))
    assert r.status_code == 200
    size, _ = checkpoint(client, audit_auth, node)
    older = client.get("/v1/log/checkpoint", headers=audit_auth, params={"size": size})
    assert older.status_code == 200 and older.text == r.text
    assert (
        client.get("/v1/log/checkpoint", headers=audit_auth, params={"size": 0}).status_code == 404
    )


def test_page_is_capped(client: Any, audit_auth: dict[str, str], node: Node) -> None:
    from app.services.tx import transaction

    with transaction(node) as tx:
        for i in range(1005):
            tx.append("test", {"n": i})
    r = client.get("/v1/log/entries", headers=audit_auth, params={"start": 0, "end": 5000})
    assert r.status_code == 200 and len(r.json()) == 1000
