"""Issue 9 (observations 4, 5, 6): what a pinned peer with valid signatures can do to records
that are not its own - revive retracted signals, outvote the federation, reach past an
origin's audience. Each test failed on the code before the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from app.federation.pages import RecordEnvelope, RecordsPage
from app.ids import new_id
from app.services import records, sync
from app.storage import peers as peer_store
from app.storage.types import utcnow
from tests.federation_int.conftest import TNode, mesh


def _verdict(node: TNode, signal_id: str, origin: str, verdict: str) -> None:
    r = node.client.post(
        "/v1/feedback",
        headers=node.platform,
        json={"signal": signal_id, "origin": origin, "verdict": verdict, "reason": "x"},
    )
    assert r.status_code == 200, r.text


def _signal(node: TNode, sid: str) -> dict[str, Any]:
    r = node.client.get(f"/v1/signals/{sid}", headers=node.platform)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _apply(receiver: TNode, sender: str, recs: list[dict[str, Any]], hops: int = 1) -> Any:
    """Apply a page `sender` could have served, through the real apply path."""
    with receiver.node.db.read() as session:
        row = peer_store.get_peer(session, sender)
        assert row is not None
        after = row.cursor
    page = RecordsPage([RecordEnvelope(r, hops) for r in recs], after + 1, "", False)
    return sync.apply_page(receiver.node, sender, after, page)


# --- observation 6: feedback -------------------------------------------------------------


def test_one_peer_cannot_outvote_the_federation(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b, c, d = make_nodes("a.test", "b.test", "c.test", "d.test")
    mesh(a, b, c, d)
    sid = a.submit(type="md5", value="61" * 16, audience={"tlp": "green", "hops": 1})
    for n in (b, c, d):
        n.pull(a)
    _verdict(b, sid, "a.test", "true_positive")
    _verdict(c, sid, "a.test", "true_positive")
    for _ in range(10):  # ten fresh, validly signed verdicts from one peer
        _verdict(d, sid, "a.test", "false_positive")
    for n in (b, c, d):
        a.pull(n)
    body = _signal(a, sid)
    assert body["feedback"] == {"false_positive": 1, "true_positive": 2}
    assert body["feedback_status"] == "confirmed"
    # The latest verdict of an origin replaces its earlier ones.
    _verdict(d, sid, "a.test", "true_positive")
    _verdict(b, sid, "a.test", "seen")  # `seen` does not replace b's judgement
    a.pull(d)
    a.pull(b)
    body = _signal(a, sid)
    assert body["feedback"] == {"seen": 1, "true_positive": 3}


def test_older_verdict_replayed_later_does_not_win(make_nodes: Callable[..., list[TNode]]) -> None:
    a, d = make_nodes("a.test", "d.test")
    mesh(a, d)
    sid = a.submit(type="md5", value="62" * 16)
    d.pull(a)
    early = utcnow() - timedelta(minutes=5)
    _verdict(d, sid, "a.test", "true_positive")
    a.pull(d)
    # d signs a verdict dated before its true_positive and hands it over afterwards.
    old = records.sign(
        d.node,
        records.feedback_body(
            uid=new_id(),
            signal_origin="a.test",
            signal_uid=sid,
            verdict="false_positive",
            reason="replayed",
            at=early,
        ),
    )
    result = _apply(a, "d.test", [old])
    assert result.refused == 0
    assert _signal(a, sid)["feedback"] == {"true_positive": 1}


def test_verdict_from_outside_the_audience_is_refused(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    amber = a.submit(type="md5", value="63" * 16, audience={"tlp": "amber", "peers": ["b.test"]})
    # c never received the amber signal; it signs verdicts on both anyway.
    forged = [
        records.sign(
            c.node,
            records.feedback_body(
                uid=new_id(),
                signal_origin="a.test",
                signal_uid=sid,
                verdict="false_positive",
                reason="x",
                at=utcnow(),
            ),
        )
        for sid in (amber,)
    ]
    result = _apply(a, "c.test", forged)
    assert result.refused == 1 and "audience" in result.reasons[0]
    assert _signal(a, amber)["feedback"] == {}


# --- observation 4: retraction tombstones --------------------------------------------------


def _retract(node: TNode, sid: str) -> None:
    r = node.client.post(f"/v1/signals/{sid}/retract", headers=node.platform, json={"reason": "x"})
    assert r.status_code == 200, r.text


def test_retraction_outlives_a_relay_serving_the_original(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    value = "71" * 16
    sid = a.submit(type="md5", value=value, audience={"tlp": "green", "hops": 2})
    b.pull(a)  # b holds the signal, and has not pulled since the retraction
    _retract(a, sid)
    c.pull(a)  # c gets only the retraction: it never held the signal
    assert c.match("md5", value) == []
    c.pull(b)  # b (a stale relay) now serves the original record
    assert c.match("md5", value) == []
    assert _signal(c, sid)["status"] == "retracted"
    # The same retraction arriving again is a duplicate, not a second log entry.
    received = len(c.log_entries("received"))
    with c.node.db.write() as session:
        row = peer_store.get_peer(session, "a.test")
        assert row is not None
        row.cursor = 0
        session.add(row)
    c.pull(a)
    assert len(c.log_entries("received")) == received
    # c hands the tombstone on as the signal's retraction, within the signal's audience: the
    # stale relay learns it from c.
    assert len(b.match("md5", value)) == 1
    b.pull(c)
    assert b.match("md5", value) == []


def test_retraction_then_signal_in_one_page(make_nodes: Callable[..., list[TNode]]) -> None:
    a, c = make_nodes("a.test", "c.test")
    mesh(a, c)
    sid = a.submit(type="md5", value="72" * 16)
    with a.node.db.read() as session:
        from app.storage import repos

        row = repos.get_signal(session, sid, "a.test")
        assert row is not None
        signal = dict(row.record)
    _retract(a, sid)
    with a.node.db.read() as session:
        row = repos.get_signal(session, sid, "a.test")
        assert row is not None and row.retraction is not None
        retraction = dict(row.retraction)
    result = _apply(c, "a.test", [retraction, signal])
    assert result.refused == 0, result.reasons
    assert c.match("md5", "72" * 16) == []


# --- observation 5: audience narrowed after the fact ----------------------------------------


def test_removed_or_narrowed_peer_gets_nothing_new_through_a_relay(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c, d = make_nodes("a.test", "b.test", "c.test", "d.test")
    mesh(a, b, c, d)
    before = a.submit(type="md5", value="81" * 16, audience={"tlp": "green", "hops": 1})
    # a removes c, and narrows what it shares with d to amber only.
    assert a.client.delete("/v1/admin/peers/c.test", headers=a.admin).status_code == 200
    r = a.client.put("/v1/admin/peers/d.test/policy", headers=a.admin, json={"policy": "tlp=amber"})
    assert r.status_code == 200, r.text
    after = a.submit(type="md5", value="82" * 16, audience={"tlp": "green", "hops": 1})
    b.pull(a)
    c.pull(b)
    d.pull(b)
    # The record published before the change still travels (its signed audience allowed it).
    assert [m["id"] for m in c.match("md5", "81" * 16)] == [before]
    assert c.match("md5", "82" * 16) == []
    assert d.match("md5", "82" * 16) == []
    record = _signal_record(a, after)
    assert record["audience"]["exclude"] == ["c.test", "d.test"]
    # A relay that ignored the exclusion would still be refused by the excluded peer itself.
    result = _apply(c, "b.test", [record], hops=2)
    assert result.refused == 1 and "excludes c.test" in result.reasons[0]
    assert c.match("md5", "82" * 16) == []
    # A retraction still reaches the excluded peer that holds an earlier signal.
    _retract(a, before)
    b.pull(a)
    c.pull(b)
    assert c.match("md5", "81" * 16) == []


def _signal_record(node: TNode, sid: str) -> dict[str, Any]:
    from app.storage import repos

    with node.node.db.read() as session:
        row = repos.get_signal(session, sid, node.origin)
        assert row is not None
        return dict(row.record)


def test_member_feed_counts_as_a_hop(make_nodes: Callable[..., list[TNode]]) -> None:
    from app.services import apikeys

    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    a.submit(type="md5", value="91" * 16, audience={"tlp": "green", "hops": 0})
    relayable = a.submit(type="md5", value="92" * 16, audience={"tlp": "green", "hops": 1})
    b.pull(a)
    assert len(b.match("md5", "91" * 16)) == 1  # b may use it itself
    own = b.submit(type="md5", value="93" * 16, audience={"tlp": "green", "hops": 0})
    member = apikeys.create(b.node, "member", ["feed"], member=True).key
    headers = {"Authorization": f"Bearer {member}"}
    r = b.client.get("/v1/changes?limit=100", headers=headers)
    assert r.status_code == 200, r.text
    served = {item["record"]["id"] for item in r.json()["records"] if "id" in item["record"]}
    assert served == {relayable, own}
    r = b.client.get("/stopncii/v1/FetchHashes?startTimestamp=0", headers=headers)
    assert r.status_code == 200, r.text
    values = {h["hashValue"] for h in r.json()["hashRecords"]}
    assert values == {"92" * 16, "93" * 16}
