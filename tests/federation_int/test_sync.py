"""Pull sync between nodes in one process: audience, retraction, feedback, idempotence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.storage import peers as store
from tests.federation_int.conftest import PDQ, TNode, mesh
from tests.hostile.helpers import QueryCounter


def test_signal_reaches_peers_and_retraction_stops_it(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    sid = a.submit(type="pdq", value=PDQ, quality=90)
    b.pull(a)
    c.pull(a)
    assert [m["id"] for m in b.match("pdq", PDQ)] == [sid]
    assert [m["origin"] for m in c.match("pdq", PDQ)] == ["a.test"]

    # Receiver logged what it received and from whom; the sender what it delivered to whom.
    received = b.log_entries("received")
    assert received[-1]["from"] == "a.test" and received[-1]["record"]["id"] == sid
    delivered = [e for e in a.log_entries("delivered") if e["to"] == "b.test"]
    assert delivered and delivered[-1]["count"] == 1

    # Pulling again changes nothing (idempotent; the cursor moved on).
    again = b.pull(a)
    assert again.applied == 0

    r = a.client.post(f"/v1/signals/{sid}/retract", headers=a.platform, json={"reason": "mistake"})
    assert r.status_code == 200, r.text
    res = b.pull(a)
    assert res.applied == 1, res
    c.pull(a)
    assert b.match("pdq", PDQ) == []
    assert c.match("pdq", PDQ) == []
    r = b.client.get(f"/v1/signals/{sid}", headers=b.platform)
    assert r.json()["status"] == "retracted"


def test_amber_goes_only_to_the_named_peer(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    a.submit(type="md5", value="ab" * 16, audience={"tlp": "amber", "peers": ["b.test"]})
    b.pull(a)
    c.pull(a)
    # b relays nothing amber to c.
    c.pull(b)
    assert len(b.match("md5", "ab" * 16)) == 1
    assert c.match("md5", "ab" * 16) == []
    # The amber record is logged as a commitment only, at both ends.
    rec = b.log_entries("received")[-1]
    assert "record" not in rec and rec["tlp"] == "amber"


def test_red_never_leaves_and_policy_filters(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b = make_nodes("a.test", "b.test")
    b.add_peer(a)
    a.add_peer(b, "categories=grooming;tlp=green")
    a.submit(type="md5", value="01" * 16, audience={"tlp": "red"})
    a.submit(type="md5", value="02" * 16, categories=["csam"])
    a.submit(type="md5", value="03" * 16, categories=["grooming"])
    b.pull(a)
    assert b.match("md5", "01" * 16) == []
    assert b.match("md5", "02" * 16) == []
    assert len(b.match("md5", "03" * 16)) == 1


def test_green_relay_within_hop_limit(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    # c knows a's key (to verify a's signature) but only pulls from b.
    mesh(a, b, c)
    one_hop = a.submit(type="md5", value="0a" * 16, audience={"tlp": "green", "hops": 1})
    no_hop = a.submit(type="md5", value="0b" * 16, audience={"tlp": "green", "hops": 0})
    b.pull(a)
    c.pull(b)
    assert [m["id"] for m in c.match("md5", "0a" * 16)] == [one_hop]
    assert c.match("md5", "0b" * 16) == []
    r = c.client.get(f"/v1/signals/{one_hop}", headers=c.platform)
    body = r.json()
    assert body["received_from"] == "b.test" and body["origin"] == "a.test"
    assert no_hop


def test_feedback_reaches_the_origin_directly(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    # c is not a's peer; a pins c's key so that it can verify c's verdict relayed by b.
    a.add_peer(b)
    b.add_peer(a)
    b.add_peer(c)
    c.add_peer(b)
    c.add_peer(a)
    a.add_peer(c)
    sid = a.submit(type="md5", value="0c" * 16, audience={"tlp": "green", "hops": 1})
    b.pull(a)
    c.pull(b)
    r = c.client.post(
        "/v1/feedback",
        headers=c.platform,
        json={"signal": sid, "origin": "a.test", "verdict": "true_positive"},
    )
    assert r.status_code == 200, r.text
    # c sends it to a directly (a is c's peer)...
    a.pull(c)
    body = a.client.get(f"/v1/signals/{sid}", headers=a.platform).json()
    assert body["feedback"] == {"true_positive": 1}
    assert body["feedback_status"] == "confirmed"


def test_feedback_routed_via_the_node_we_got_the_signal_from(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    a.add_peer(b)
    b.add_peer(a)
    b.add_peer(c)
    c.add_peer(b)
    c.add_peer(a)  # to verify a's signature on the relayed record
    a.add_peer(c)  # to verify c's verdict relayed by b
    sid = a.submit(type="md5", value="0d" * 16, audience={"tlp": "green", "hops": 1})
    b.pull(a)
    c.pull(b)
    # c then stops federating with a: its verdict can only travel back the way the signal came.
    assert c.client.delete("/v1/admin/peers/a.test", headers=c.admin).status_code == 200
    r = c.client.post(
        "/v1/feedback",
        headers=c.platform,
        json={"signal": sid, "origin": "a.test", "verdict": "false_positive", "reason": "x"},
    )
    assert r.status_code == 200, r.text
    b.pull(c)
    a.pull(b)
    body = a.client.get(f"/v1/signals/{sid}", headers=a.platform).json()
    assert body["feedback"] == {"false_positive": 1}


def test_cursor_and_pages(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    for i in range(25):
        a.submit(type="md5", value=f"{i:032x}")
    b.fed.page_size = 10
    result = b.pull(a)
    assert result.applied == 25 and result.pages >= 3
    peers: list[dict[str, Any]] = b.client.get("/v1/admin/peers", headers=b.admin).json()
    (status,) = peers
    assert status["records_received"] == 25 and status["lag"] == 0
    assert status["last_success"] is not None and status["last_error"] is None


def test_a_pull_round_writes_the_peer_row_once_per_page(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """The cursor, counts and last_attempt move in each page's own transaction: a round adds
    only its start and its end, not a write (and a key-id read) of its own before every page."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    for i in range(25):
        a.submit(type="md5", value=f"{i:032x}")
    b.fed.page_size = 5
    with b.node.db.read() as session:
        before = store.get_peer(session, "a.test")
        assert before is not None
        started = before.last_attempt
    with QueryCounter(b.node.db) as counted:
        result = b.pull(a)
    assert result.applied == 25 and result.pages == 6  # 5 full pages, then an empty one
    peer_updates = [s for s in counted.statements if s.lstrip().upper().startswith("UPDATE PEER")]
    assert len(peer_updates) == result.pages + 2, peer_updates
    key_reads = [s for s in counted.statements if "FROM peer_key" in s]
    assert len(key_reads) == 1, key_reads
    with b.node.db.read() as session:
        after = store.get_peer(session, "a.test")
        assert after is not None and after.cursor == result.cursor
        assert after.last_attempt is not None
        assert started is None or after.last_attempt > started


def test_push_notify_makes_peers_pull(make_nodes: Callable[..., list[TNode]]) -> None:
    import time

    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    a.submit(type="md5", value="0e" * 16)
    assert a.fed.push() == 2
    assert a.fed.push() == 0  # nothing changed since: no notify storm
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        b.refresh()
        c.refresh()
        if b.match("md5", "0e" * 16) and c.match("md5", "0e" * 16):
            break
        time.sleep(0.05)
    assert b.match("md5", "0e" * 16) and c.match("md5", "0e" * 16)


def test_metrics(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    a.submit(type="md5", value="0e" * 16)
    b.pull(a)
    assert b.client.get("/metrics").status_code == 401
    text = b.client.get("/metrics", headers=b.admin).text
    assert 'signet_peer_records_received_total{peer="a.test"} 1.0' in text
    assert 'signet_peer_lag_entries{peer="a.test"}' in text
