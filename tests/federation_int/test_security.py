"""What a hostile or broken peer can send is refused, logged, and never crashes a node."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.crypto.keys import NodeKey
from app.crypto.records import sign_record
from app.federation.httpsig import sign_request
from app.federation.pages import RecordEnvelope, RecordsPage
from app.services import sync
from tests.federation_int.conftest import TNode, mesh
from tests.signal_bodies import signal_body

RECORDS = "/federation/v1/records?after=0&limit=10"


def signed_get(
    target: TNode,
    path: str,
    keyid: str,
    key: NodeKey,
    *,
    body: bytes = b"",
    send: bytes | None = None,
) -> Any:
    url = target.url + path
    method = "POST" if body or send is not None else "GET"
    headers = sign_request(
        method, url, {}, body, keyid=keyid, sign=key.sign, created=int(time.time())
    )
    return target.client.request(
        method, url, headers=headers, content=send if send is not None else body
    )


@pytest.fixture
def pair(make_nodes: Callable[..., list[TNode]]) -> tuple[TNode, TNode]:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    return a, b


def test_signed_request_from_a_peer_is_served(pair: tuple[TNode, TNode]) -> None:
    a, b = pair
    r = signed_get(a, RECORDS, "b.test", b.node.key)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"records", "next", "checkpoint", "has_more"}


def test_unsigned_request_is_refused(pair: tuple[TNode, TNode]) -> None:
    a, _ = pair
    r = a.client.get(a.url + RECORDS)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


def test_unknown_key_is_refused_and_logged(
    pair: tuple[TNode, TNode], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = pair
    with caplog.at_level(logging.WARNING, logger="signet.federation"):
        r = signed_get(a, RECORDS, "evil.test", NodeKey.generate())
    assert r.status_code == 401  # the same refusal as a bad signature (tests/hostile)
    assert r.json()["status"] == 401
    assert "refused federation request" in caplog.text and "evil.test" in caplog.text


def test_key_of_another_peer_is_refused(pair: tuple[TNode, TNode]) -> None:
    a, _ = pair
    r = signed_get(a, RECORDS, "b.test", NodeKey.generate())  # b's name, not b's key
    assert r.status_code == 401


def test_replayed_request_is_refused(
    pair: tuple[TNode, TNode], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    url = a.url + RECORDS
    headers = sign_request(
        "GET", url, {}, b"", keyid="b.test", sign=b.node.key.sign, created=int(time.time())
    )
    assert a.client.get(url, headers=headers).status_code == 200
    with caplog.at_level(logging.WARNING, logger="signet.federation"):
        again = a.client.get(url, headers=headers)
    assert again.status_code == 401
    assert "nonce" in caplog.text  # the reason is logged, never told to the caller


def test_replay_is_caught_by_the_shared_database_cache(pair: tuple[TNode, TNode]) -> None:
    """Another worker (a fresh memory front) still sees the nonce in the database."""
    a, b = pair
    url = a.url + RECORDS
    headers = sign_request(
        "GET", url, {}, b"", keyid="b.test", sign=b.node.key.sign, created=int(time.time())
    )
    assert a.client.get(url, headers=headers).status_code == 200
    from app.federation.httpsig import MemoryNonceCache

    a.fed.nonces.memory = MemoryNonceCache(600)
    assert a.client.get(url, headers=headers).status_code == 401


def test_stale_request_is_refused(
    pair: tuple[TNode, TNode], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    url = a.url + RECORDS
    headers = sign_request(
        "GET", url, {}, b"", keyid="b.test", sign=b.node.key.sign, created=int(time.time()) - 3600
    )
    with caplog.at_level(logging.WARNING, logger="signet.federation"):
        r = a.client.get(url, headers=headers)
    assert r.status_code == 401 and "expired" in caplog.text


def test_swapped_body_is_refused(
    pair: tuple[TNode, TNode], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    cp = a.client.get("/federation/v1/checkpoint").text
    good = (
        '{"origin":"b.test","size":0,"checkpoint":' + __import__("json").dumps(cp) + "}"
    ).encode()
    with caplog.at_level(logging.WARNING, logger="signet.federation"):
        r = signed_get(
            a,
            "/federation/v1/notify",
            "b.test",
            b.node.key,
            body=good,
            send=good.replace(b"b.test", b"c.test"),
        )
    assert r.status_code == 401
    assert "Content-Digest" in caplog.text


def test_removed_peer_is_refused(pair: tuple[TNode, TNode]) -> None:
    a, b = pair
    assert a.client.delete("/v1/admin/peers/b.test", headers=a.admin).status_code == 200
    r = signed_get(a, RECORDS, "b.test", b.node.key)
    assert r.status_code == 401
    # and is not pulled from any more
    assert a.fed.pull("b.test").error is not None
    kinds = [e["kind"] for e in a.log_entries()]
    assert "peer.removed" in kinds


def test_garbage_is_a_4xx_never_a_5xx(pair: tuple[TNode, TNode]) -> None:
    a, b = pair
    for body in (b"", b"{", b"[]", b'{"origin":"b.test"}', b"\xff" * 10):
        r = signed_get(a, "/federation/v1/notify", "b.test", b.node.key, body=body or b" ")
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        r = signed_get(
            a, "/federation/v1/witness/add-checkpoint", "b.test", b.node.key, body=body or b" "
        )
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    r = a.client.get(a.url + RECORDS, headers={"Signature-Input": "sig1=(", "Signature": "x"})
    assert r.status_code == 401  # unparsable headers get the one refusal too


def _page(*records: dict[str, Any], hops: int = 1, after: int = 0) -> RecordsPage:
    return RecordsPage([RecordEnvelope(r, hops) for r in records], after + 1, "x\n1\ny\n", False)


def _signal(origin: str, key: NodeKey, **audience: Any) -> dict[str, Any]:
    body = signal_body(
        id="01forged0000000000000000000",
        value="ee" * 16,
        valid_until="2099-01-01T00:00:00Z",
        audience={"tlp": "green", "peers": [], "hops": 1, **audience},
    )
    return sign_record(body, key, origin)


def test_forged_record_is_refused_and_logged(make_nodes: Callable[..., list[TNode]]) -> None:
    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    forged = _signal("a.test", NodeKey.generate())  # valid shape, a's name, wrong key
    forged["key_id"] = a.node.key_id  # even claiming a's key id, the signature fails
    result = sync.apply_page(b.node, "c.test", 0, _page(forged, hops=2))
    assert result.refused == 1 and result.applied == 0
    b.refresh()
    assert b.match("md5", "ee" * 16) == []
    (refused,) = b.log_entries("refused")
    assert refused["from"] == "c.test" and "does not verify" in refused["reasons"][0]
    # The cursor moved on: a bad record does not wedge the sync.
    assert b.client.get("/v1/admin/peers/c.test", headers=b.admin).json()["cursor"] == 1


def test_unpinned_origin_red_and_tampered_records_are_refused(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    stranger = _signal("z.test", NodeKey.generate())
    red = _signal("a.test", a.node.key, tlp="red")
    tampered = dict(_signal("a.test", a.node.key), value="dd" * 16)
    own = _signal("b.test", b.node.key)
    result = sync.apply_page(b.node, "a.test", 0, _page(stranger, red, tampered, own))
    assert (result.applied, result.refused) == (0, 4)


def test_cosigning_and_equivocation(pair: tuple[TNode, TNode]) -> None:
    from app.crypto.checkpoint import Checkpoint, sign_checkpoint
    from app.crypto.witness import format_add_checkpoint_body
    from app.services import log as exchange_log
    from app.services import witness

    a, b = pair
    a.submit(type="md5", value="0e" * 16)
    exchange_log.publish_checkpoint(a.node)
    results = witness.request_cosignatures(a.node, a.fed.client)
    assert [(r.peer, r.ok) for r in results] == [("b.test", True)], results
    note = a.client.get("/federation/v1/checkpoint").text
    assert "— b.test " in note

    # a grows and asks again: the consistency proof from the cosigned size is accepted.
    a.submit(type="md5", value="0f" * 16)
    exchange_log.publish_checkpoint(a.node)
    assert all(r.ok for r in witness.request_cosignatures(a.node, a.fed.client))

    # A forked history: same size as cosigned, another root, signed by a's key.
    size = a.client.get("/v1/admin/peers/b.test", headers=a.admin).json()["witness_size"]
    fork = sign_checkpoint(Checkpoint("a.test", size, b"\x07" * 32), a.node.key)
    body = format_add_checkpoint_body(size, [], fork).encode()
    r = signed_get(b, "/federation/v1/witness/add-checkpoint", "a.test", a.node.key, body=body)
    assert r.status_code == 409
    assert r.text.strip() == str(size)
    (evidence,) = b.log_entries("equivocation")
    assert evidence["log"] == "a.test" and fork in evidence["notes"]

    # Rolling back to a smaller size is refused with the size held.
    small = sign_checkpoint(Checkpoint("a.test", 1, b"\x01" * 32), a.node.key)
    r = signed_get(
        b,
        "/federation/v1/witness/add-checkpoint",
        "a.test",
        a.node.key,
        body=format_add_checkpoint_body(0, [], small).encode(),
    )
    assert r.status_code == 409 and r.headers["content-type"].startswith("text/x.tlog.size")

    # A peer may only submit its own log.
    other = sign_checkpoint(Checkpoint("b.test", 1, b"\x01" * 32), b.node.key)
    r = signed_get(
        b,
        "/federation/v1/witness/add-checkpoint",
        "a.test",
        a.node.key,
        body=format_add_checkpoint_body(0, [], other).encode(),
    )
    assert r.status_code == 403
