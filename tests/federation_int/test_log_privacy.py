"""Issue 9 (observations 8, 9): the exchange log does not link restricted records, and
reconcile reports refusals - an audience violation is a failure, not "accounted for"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.audit.client import AuditClient
from app.audit.federation import Reconciliation, reconcile, scan
from app.audit.verify import LINKING_FIELDS, LogAuditor
from app.crypto.keys import VerifierKey
from app.federation.pages import RecordEnvelope, RecordsPage
from app.ids import new_id
from app.services import apikeys, records, sync
from app.storage import log as log_store
from app.storage import peers as peer_store
from app.storage.types import utcnow
from tests.federation_int.conftest import TNode, mesh


def _reconcile(a: TNode, b: TNode) -> Reconciliation:
    views = []
    for n in (a, b):
        token = apikeys.create(n.node, "auditor", ["audit"]).key
        with n.node.db.read() as session:
            size = log_store.log_size(session)
        with AuditClient(n.url, token, http=n.client) as client:
            views.append(scan(client, n.origin, size))
    return reconcile(views[0], views[1])


def _apply(receiver: TNode, sender: str, recs: list[dict[str, Any]], hops: int) -> Any:
    with receiver.node.db.read() as session:
        row = peer_store.get_peer(session, sender)
        assert row is not None
        after = row.cursor
    page = RecordsPage([RecordEnvelope(r, hops) for r in recs], after + 1, "", False)
    return sync.apply_page(receiver.node, sender, after, page)


def test_amber_exchange_leaves_no_link_in_either_log(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    amber_sid = a.submit(
        type="md5", value="a1" * 16, audience={"tlp": "amber", "peers": ["b.test"]}
    )
    green = a.submit(type="md5", value="a2" * 16)
    b.pull(a)
    r = b.client.post(
        "/v1/feedback",
        headers=b.platform,
        json={"signal": amber_sid, "origin": "a.test", "verdict": "true_positive"},
    )
    assert r.status_code == 200, r.text
    a.pull(b)
    for n in (a, b):
        for entry in n.log_entries():
            if "commitment" in entry:
                # commitment, tlp, kind, time: nothing that names the record or the peer
                assert not (LINKING_FIELDS & set(entry)), (n.origin, entry)
    # The open records are still logged with their digests and peers, for reconcile.
    delivered = [e for e in a.log_entries("delivered") if "digests" in e]
    assert delivered and all(e["to"] == "b.test" for e in delivered)
    assert sum(e["count"] for e in delivered) == 1
    assert any(e.get("record", {}).get("id") == green for e in b.log_entries("received"))
    # The auditor's verifier agrees and still verifies the log.
    auditor = LogAuditor(VerifierKey.parse(b.node.verifier_key))
    for i, entry in enumerate(b.log_entries()):
        auditor.add(i, entry)
    assert auditor.report.commitments >= 2 and auditor.report.linkable == []
    result = _reconcile(a, b)
    assert result.ok, result
    assert result.directions[0].restricted_delivered == 1
    assert result.directions[0].restricted_received == 1


def test_reconcile_reports_refusals_and_fails_on_violations(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, c)
    a.add_peer(b)
    b.add_peer(a)  # b does not pin c
    c.submit(type="md5", value="b1" * 16, audience={"tlp": "green", "hops": 1})
    a.pull(c)
    b.pull(a)  # a relays c's record; b refuses it: origin not pinned, a benign refusal
    result = _reconcile(a, b)
    a_to_b = result.directions[0]
    assert result.ok, a_to_b
    assert a_to_b.refused == 1 and len(a_to_b.refusals) == 1
    assert "not pinned" in a_to_b.refusals[0][1]

    # a (now hostile) hands b a record outside its audience and never logs the delivery.
    outside = records.sign(
        a.node,
        records.signal_body(
            uid=new_id(),
            version=1,
            type_="md5",
            value="b2" * 16,
            attrs={},
            categories=["csam"],
            indicators=[],
            opinion="positive",
            confidence=50,
            reviewed=False,
            valid_from=utcnow(),
            valid_until=utcnow().replace(year=utcnow().year + 1),
            tlp="amber",
            peers=["c.test"],
            hops=0,
        ),
    )
    assert _apply(b, "a.test", [outside], hops=1).refused == 1
    result = _reconcile(a, b)
    a_to_b = result.directions[0]
    assert not result.ok
    assert len(a_to_b.violations) == 1 and a_to_b.violations[0][1].startswith("NotInAudience")


def test_reconcile_reports_refusals_of_records_never_delivered(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    # A refusal for a record the sender never logged delivering is a mismatch even when benign.
    a2, b2 = make_nodes("a2.test", "b2.test")
    mesh(a2, b2)
    bad = records.sign(
        a2.node,
        records.feedback_body(
            uid=new_id(),
            signal_origin="a2.test",
            signal_uid=new_id(),
            verdict="true_positive",
            reason=None,
            at=utcnow(),
        ),
    )
    assert _apply(b2, "a2.test", [bad], hops=1).refused == 1
    result = _reconcile(a2, b2)
    assert not result.ok
    assert len(result.directions[0].refused_undelivered) == 1
