"""Provable withdrawal (issue 16): a receiver logs an `applied` receipt when it applies a
retraction or an expiry, and `reconcile_nodes` names, per withdrawal, who applied it (with an
inclusion proof) and who holds the signal without a receipt."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from app.audit.reconcile import NodeSpec, reconcile_nodes
from app.audit.withdrawals import APPLIED, MISSING, NOT_AUDITED, PENDING
from app.crypto.keys import VerifierKey
from app.services import apikeys, receipts, signals
from tests.federation_int.conftest import PDQ, TNode, mesh


def _spec(n: TNode) -> NodeSpec:
    token = apikeys.create(n.node, "auditor", ["audit"]).key
    return NodeSpec(n.url, token, VerifierKey.parse(n.node.verifier_key), http=n.client)


def _checkpoint(*nodes: TNode) -> None:
    for n in nodes:
        r = n.client.post("/v1/log/checkpoint", headers=n.admin)
        assert r.status_code in (200, 201), r.text


def _retract(n: TNode, sid: str) -> dict:
    r = n.client.post(f"/v1/signals/{sid}/retract", headers=n.platform, json={"reason": "error"})
    assert r.status_code == 200, r.text
    (entry,) = [e for e in n.log_entries("retraction") if e["record"]["signal"]["id"] == sid]
    return entry["record"]


def test_retraction_receipts_name_who_applied_it_and_who_is_missing(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    sid = a.submit(type="pdq", value=PDQ, quality=90)
    b.pull(a)
    c.pull(a)
    retraction = _retract(a, sid)
    b.pull(a)  # c is "down": it does not pull

    (receipt,) = b.log_entries("applied")
    digest = receipts.record_digest(retraction)
    assert receipt["action"] == "retraction" and receipt["digest"] == digest
    assert receipt["signal"] == {"origin": "a.test", "id": sid}
    received = b.log_entries()[receipt["received"]]
    assert received["kind"] == "received" and received["record"] == retraction
    assert c.log_entries("applied") == []

    specs = [_spec(n) for n in (a, b, c)]
    _checkpoint(a, b, c)
    result = reconcile_nodes(specs, grace=timedelta(0))
    (w,) = [w for w in result.withdrawals if w.action == "retraction"]
    assert (w.origin, w.signal_id, w.digest) == ("a.test", sid, digest)
    status = {h.node: h for h in w.holders}
    assert status["b.test"].status == APPLIED and status["c.test"].status == MISSING
    ev = status["b.test"].evidence
    assert ev is not None and ev.entry == receipt and ev.proof is not None
    assert w.issued is not None and w.issued.entry["record"] == retraction
    assert not w.ok and not result.ok

    # Within the grace period the same gap is pending, not a failure.
    assert {h.status for h in reconcile_nodes(specs).withdrawals[0].holders} == {
        APPLIED,
        PENDING,
    }

    # c comes back and catches up: its receipt is later than b's, and the federation is whole.
    time.sleep(1.1)
    c.pull(a)
    _checkpoint(a, c)  # a's log now also says it delivered the retraction to c
    result = reconcile_nodes(specs, grace=timedelta(0))
    (w,) = result.withdrawals
    status = {h.node: h for h in w.holders}
    assert status["c.test"].status == APPLIED
    assert status["c.test"].time is not None and status["b.test"].time is not None
    assert status["c.test"].time > status["b.test"].time
    assert result.ok, [p.directions for p in result.pairs]

    # Without c's log, a's own `delivered` entries still name c as a holder.
    partial = reconcile_nodes(specs[:2], grace=timedelta(0))
    assert {h.node: h.status for h in partial.withdrawals[0].holders} == {
        "b.test": APPLIED,
        "c.test": NOT_AUDITED,
    }


def test_a_restricted_retraction_receipt_is_a_commitment(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    sid = a.submit(
        type="pdq", value=PDQ, quality=90, audience={"tlp": "amber", "peers": ["b.test"]}
    )
    b.pull(a)
    r = a.client.post(f"/v1/signals/{sid}/retract", headers=a.platform, json={"reason": "error"})
    assert r.status_code == 200, r.text
    b.pull(a)
    (receipt,) = b.log_entries("applied")
    assert set(receipt) == {"kind", "time", "commitment", "tlp"} and receipt["tlp"] == "amber"
    assert sid not in str(b.log_entries())


def test_a_retraction_that_arrives_before_its_signal_gets_a_committed_receipt(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    sid = a.submit(type="pdq", value=PDQ, quality=90)
    _retract(a, sid)
    b.pull(a)  # b never held it: it gets the retraction only, and keeps a tombstone
    (receipt,) = b.log_entries("applied")
    assert set(receipt) == {"kind", "time", "commitment", "tlp"}


def test_expiry_receipts_at_receivers_only(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    until = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    sid = a.submit(
        type="pdq", value=PDQ, quality=90, valid_until=until.isoformat().replace("+00:00", "Z")
    )
    b.pull(a)
    while datetime.now(UTC) <= until:
        time.sleep(0.2)
    assert signals.expire_due(a.node) == 1
    assert signals.expire_due(b.node) == 1
    assert signals.expire_due(b.node) == 0  # once only
    assert a.log_entries("applied") == []  # the origin's own signal: its log already says when
    (receipt,) = b.log_entries("applied")
    (held,) = [e for e in b.log_entries("received") if e["record"]["id"] == sid]
    assert receipt["action"] == "expiry"
    assert receipt["signal"] == {"origin": "a.test", "id": sid, "version": 1}
    assert receipt["digest"] == receipts.record_digest(held["record"])
    assert receipt["valid_until"] == held["record"]["valid_until"]

    _checkpoint(a, b)
    result = reconcile_nodes([_spec(a), _spec(b)], grace=timedelta(0))
    (w,) = result.withdrawals
    assert (w.action, w.signal_id) == ("expiry", sid)
    assert [(h.node, h.status) for h in w.holders] == [("b.test", APPLIED)]
    assert result.ok
