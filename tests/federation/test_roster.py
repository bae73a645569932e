"""The federation roster: threshold signatures, version chain, equivocation (pure, then on both
engines through the service)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.crypto.keys import NodeKey, VerifierKey
from app.federation import roster as rosters
from app.federation.roster import RosterError


def _key(origin: str) -> tuple[NodeKey, VerifierKey]:
    k = NodeKey.generate()
    return k, k.verifier(origin)


STEWARDS = [_key(f"steward{i}.example") for i in range(3)]
A = _key("a.example")
B = _key("b.example")


def _doc(version: int = 1, previous: str | None = None, **signed: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "signet-roster",
        "spec": 1,
        "federation": "fed.example",
        "version": version,
        "expires": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stewards": {"threshold": 2, "keys": [str(v) for _, v in STEWARDS]},
        "members": [
            {"origin": "a.example", "key": str(A[1]), "url": "https://a.example"},
            {"origin": "b.example", "key": str(B[1]), "url": "https://b.example"},
        ],
    }
    if previous is not None:
        body["previous"] = previous
    body.update(signed)
    return {"signed": body, "signatures": []}


def _signed(doc: dict[str, Any], *who: int) -> dict[str, Any]:
    for i in who:
        doc = rosters.sign(doc, STEWARDS[i][0], STEWARDS[i][1])
    return doc


ROOT = [v for _, v in STEWARDS]


def test_quorum_is_k_distinct_stewards():
    one = rosters.parse(_signed(_doc(), 0))
    with pytest.raises(RosterError, match="1 of the configured"):
        rosters.check_update(None, one, root_stewards=ROOT, root_threshold=2)
    # The same steward twice is still one signature.
    twice = _signed(_doc(), 0)
    twice["signatures"] = twice["signatures"] * 2
    with pytest.raises(RosterError):
        rosters.check_update(None, rosters.parse(twice), root_stewards=ROOT, root_threshold=2)
    two = rosters.parse(_signed(_doc(), 0, 2))
    rosters.check_update(None, two, root_stewards=ROOT, root_threshold=2)
    # A signature by someone who is not a steward counts for nothing.
    outsider = rosters.sign(_signed(_doc(), 0), A[0], A[1])
    with pytest.raises(RosterError):
        rosters.check_update(None, rosters.parse(outsider), root_stewards=ROOT, root_threshold=2)


def test_tampered_members_invalidate_signatures():
    doc = _signed(_doc(), 0, 1)
    evil = copy.deepcopy(doc)
    evil["signed"]["members"][0]["key"] = str(_key("a.example")[1])
    with pytest.raises(RosterError):
        rosters.check_update(None, rosters.parse(evil), root_stewards=ROOT, root_threshold=2)


def test_updates_chain_by_version_and_digest():
    v1 = rosters.parse(_signed(_doc(), 0, 1))
    v2 = rosters.parse(_signed(_doc(2, v1.digest, members=[]), 1, 2))
    rosters.check_update(v1, v2, root_stewards=ROOT, root_threshold=2)
    skip = rosters.parse(_signed(_doc(3, v1.digest), 0, 1))
    with pytest.raises(RosterError, match="does not follow"):
        rosters.check_update(v1, skip, root_stewards=ROOT, root_threshold=2)
    fork = rosters.parse(_signed(_doc(2, "0" * 64), 0, 1))
    with pytest.raises(RosterError, match="chain"):
        rosters.check_update(v1, fork, root_stewards=ROOT, root_threshold=2)
    assert rosters.members_changed(v1, v2) == ["removed a.example", "removed b.example"]


def test_steward_rotation_needs_old_and_new_quorum():
    v1 = rosters.parse(_signed(_doc(), 0, 1))
    new_stewards = [_key(f"new{i}.example") for i in range(2)]
    body = _doc(2, v1.digest, stewards={"threshold": 2, "keys": [str(v) for _, v in new_stewards]})
    only_new = body
    for k, v in new_stewards:
        only_new = rosters.sign(only_new, k, v)
    with pytest.raises(RosterError, match="the current"):
        rosters.check_update(v1, rosters.parse(only_new), root_stewards=ROOT, root_threshold=2)
    both = _signed(only_new, 0, 1)
    rosters.check_update(v1, rosters.parse(both), root_stewards=ROOT, root_threshold=2)


def test_expired_and_malformed_rosters_are_refused():
    old = _doc(expires="2020-01-01T00:00:00Z")
    with pytest.raises(RosterError, match="expired"):
        rosters.check_update(
            None, rosters.parse(_signed(old, 0, 1)), root_stewards=ROOT, root_threshold=2
        )
    for mutate in (
        lambda s: s.update(version=0),
        lambda s: s.update(type="tuf-root"),
        lambda s: s["members"].append(dict(s["members"][0])),
        lambda s: s["members"][0].update(key=str(B[1])),  # a key named for someone else
        lambda s: s["members"][0].update(roles=["admin"]),
        lambda s: s["stewards"].update(threshold=4),
        lambda s: s.update(previous="ab" * 32),  # version 1 has none
    ):
        doc = _doc()
        mutate(doc["signed"])
        with pytest.raises(RosterError):
            rosters.parse(doc)
