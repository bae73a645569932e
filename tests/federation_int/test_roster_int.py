"""A roster makes every member's key known without peering (issue 17), in-process nodes; the
first node on SQLite and PostgreSQL. Real processes: tests/e2e/test_roster_e2e.py."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.crypto.keys import NodeKey
from app.federation import roster as rosters
from app.federation.roster import RosterError
from app.services import roster as roster_svc
from tests.federation_int.conftest import TNode

MD5 = "5e" * 16
STEWARDS = [NodeKey.generate() for _ in range(3)]
STEWARD_VKEYS = [k.verifier(f"steward{i}.test") for i, k in enumerate(STEWARDS)]
ROOT = {
    "roster_stewards": ",".join(str(v) for v in STEWARD_VKEYS),
    "roster_threshold": 2,
}


def _roster(
    nodes: list[TNode], version: int = 1, previous: str | None = None, *, drop: set[str] = set()
) -> dict[str, Any]:
    signed: dict[str, Any] = {
        "type": "signet-roster",
        "spec": 1,
        "federation": "chain.test",
        "version": version,
        "expires": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stewards": {"threshold": 2, "keys": [str(v) for v in STEWARD_VKEYS]},
        "members": [
            {"origin": n.origin, "key": n.node.verifier_key, "url": n.url}
            for n in nodes
            if n.origin not in drop
        ],
        "on_removal": "drop",
    }
    if previous:
        signed["previous"] = previous
    return {"signed": signed, "signatures": []}


def _sign(doc: dict[str, Any], *who: int) -> dict[str, Any]:
    for i in who:
        doc = rosters.sign(doc, STEWARDS[i], STEWARD_VKEYS[i])
    return doc


def _chain(nodes: list[TNode]) -> None:
    """Each node pins only its neighbours."""
    for left, right in itertools.pairwise(nodes):
        left.add_peer(right)
        right.add_peer(left)


def _walk(nodes: list[TNode]) -> None:
    for left, right in itertools.pairwise(nodes):
        right.pull(left)


def test_without_a_roster_a_relayed_signal_stops_after_one_hop(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    chain = make_nodes("n1.test", "n2.test", "n3.test", "n4.test")
    _chain(chain)
    chain[0].submit(type="md5", value=MD5, audience={"tlp": "green", "hops": 5})
    _walk(chain)
    assert chain[1].match("md5", MD5) and chain[3].match("md5", MD5) == []


def test_roster_members_relay_retract_and_removal(
    make_nodes: Callable[..., list[TNode]], tmp_path: Path
) -> None:
    chain = make_nodes("n1.test", "n2.test", "n3.test", "n4.test", **ROOT)
    _chain(chain)
    v1 = _sign(_roster(chain), 0, 2)
    for n in chain:
        assert roster_svc.offer(n.node, v1, "test").accepted == [1]
        assert [e["version"] for e in n.log_entries("roster")] == [1]

    uid = chain[0].submit(type="md5", value=MD5, audience={"tlp": "green", "hops": 5})
    _walk(chain)
    assert [m["id"] for m in chain[3].match("md5", MD5)] == [uid]
    r = chain[0].client.post(
        f"/v1/signals/{uid}/retract", headers=chain[0].platform, json={"reason": "test"}
    )
    assert r.status_code == 200, r.text
    _walk(chain)
    assert chain[3].match("md5", MD5) == []

    # Version 2 removes n1: its records are refused everywhere, even by n2, which pins it, and
    # what n4 already holds from n1 stops matching (on_removal: drop).
    other = "6f" * 16
    chain[0].submit(type="md5", value=other, audience={"tlp": "green", "hops": 5})
    _walk(chain)
    assert chain[3].match("md5", other)
    v2 = _sign(_roster(chain, 2, rosters.digest(v1), drop={"n1.test"}), 1, 2)
    for n in chain[1:]:
        assert roster_svc.offer(n.node, v2, "test").accepted == [2]
    assert chain[3].match("md5", other) == []
    third = "7a" * 16
    chain[0].submit(type="md5", value=third, audience={"tlp": "green", "hops": 5})
    result = chain[1].pull(chain[0])
    assert result.refused >= 1 and chain[1].match("md5", third) == []
    peers = chain[1].client.get("/v1/admin/peers", headers=chain[1].admin).json()
    assert {p["origin"]: p["roster_status"] for p in peers} == {
        "n1.test": "removed",
        "n3.test": "active",
    }
    assert chain[1].client.get("/v1/roster").json() == v2


def test_quorum_rollback_and_equivocation(make_nodes: Callable[..., list[TNode]]) -> None:
    (node,) = make_nodes("solo.test", **ROOT)
    v1_one_sig = _sign(_roster([node]), 0)
    with pytest.raises(RosterError, match="1 of the configured"):
        roster_svc.offer(node.node, v1_one_sig, "test")
    assert node.client.get("/v1/roster").status_code == 404
    v1 = _sign(_roster([node]), 0, 1)
    roster_svc.offer(node.node, v1, "test")
    # Two different version 2s, both validly signed: the second is evidence, not an update.
    v2a = _sign(_roster([node], 2, rosters.digest(v1)), 0, 1)
    v2b = _roster([node], 2, rosters.digest(v1))
    v2b["signed"]["on_removal"] = "keep"
    v2b = _sign(v2b, 1, 2)
    assert roster_svc.offer(node.node, v2a, "test").accepted == [2]
    assert roster_svc.offer(node.node, v2b, "test").equivocation == 2
    status = node.client.get("/v1/admin/roster", headers=node.admin).json()
    assert status["version"] == 2 and status["digest"] == rosters.digest(v2a)
    assert [e["version"] for e in status["equivocations"]] == [2]
    assert [e["version"] for e in node.log_entries("roster.equivocation")] == [2]
    # An older version changes nothing; a forged next version is refused.
    assert roster_svc.offer(node.node, v1, "test").accepted == []
    forged = _roster([node], 3, rosters.digest(v2a))
    forged["signatures"] = json.loads(json.dumps(v2a["signatures"]))
    with pytest.raises(RosterError):
        roster_svc.offer(node.node, forged, "test")
