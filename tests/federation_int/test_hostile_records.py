"""Issue 9, observations 1 and 7: a pinned peer that turns hostile sends well-signed records
with crafted content, or re-pulls old pages to grow our log.

Each record here is signed with the real key of a pinned peer, so only content checks (the one
validation path of `app/federation/validate.py`) stand between it and our database, our log
and our consumers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update

from app.crypto.keys import NodeKey
from app.crypto.records import sign_record
from app.federation.pages import RecordEnvelope, RecordsPage
from app.services import apikeys, sync
from app.storage.models import SignalRow
from tests.federation_int.conftest import TNode, mesh
from tests.signal_bodies import signal_body

MiB = 1024 * 1024


def _signal(key: NodeKey, origin: str, n: int, **fields: Any) -> dict[str, Any]:
    body = signal_body(
        id=f"01hostile{n:018d}",
        value=f"{n:032x}",
        audience={"tlp": "clear", "peers": [], "hops": 1},
    )
    body.update(fields)
    return sign_record(body, key, origin)


def _page(*records: dict[str, Any]) -> RecordsPage:
    return RecordsPage([RecordEnvelope(r, 1) for r in records], 1, "x\n1\ny\n", False)


BAD_FIELDS: dict[str, dict[str, Any]] = {
    "opinion": {"opinion": "bogus"},
    "confidence": {"confidence": 2**40},
    "valid_until": {"valid_until": "9999-12-31T23:59:59-05:00"},
    "categories": {"categories": ["made_up_category"]},
    "indicators": {"indicators": ["he asked to meet at the park after school"]},
    "attrs": {"attrs": {"blob": "x" * MiB}},
}


def _fetch_hashes(node: TNode) -> Any:
    key = apikeys.create(node.node, "consumer", ["feed"]).key
    return node.client.get("/stopncii/v1/FetchHashes", headers={"x-functions-key": key})


def test_bad_records_are_refused_alone_and_the_page_lands(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")  # a, the receiver, runs on the db_url engine
    mesh(a, b)
    bad = [_signal(b.node.key, "b.test", i, **f) for i, f in enumerate(BAD_FIELDS.values())]
    good = _signal(b.node.key, "b.test", 99)
    page = _page(bad[0], good, *bad[1:])

    result = sync.apply_page(a.node, "b.test", 0, page)

    assert (result.applied, result.refused) == (1, len(BAD_FIELDS)), result
    a.refresh()
    assert [m["id"] for m in a.match("md5", good["value"])] == [good["id"]]
    (refused,) = a.log_entries("refused")
    assert refused["count"] == len(BAD_FIELDS)
    named = [r.split(" ", 1)[1].split(":", 1)[0].split("[")[0] for r in refused["reasons"]]
    # attrs is caught by the record size bound before anything else reads it.
    assert named == ["opinion", "confidence", "valid_until", "categories", "indicators", "record"]
    # Nothing the peer sent is written verbatim beyond a bounded size.
    everything = json.dumps(a.log_entries())
    assert "xxxxxxxx" not in everything and "after school" not in everything
    assert len(everything) < 64 * 1024
    # The consumers' feed still answers.
    r = _fetch_hashes(a)
    assert r.status_code == 200, r.text
    assert [h["hashValue"] for h in r.json()["hashRecords"]] == [good["value"]]


@pytest.mark.parametrize(
    "fields",
    [
        {"valid_until": "2026-01-01T00:00:00Z"},  # not after valid_from
        {"valid_until": "2090-01-01T00:00:00Z"},  # beyond the 5-year bound of POST /v1/signals
        {"value": "AB" * 16},  # not canonical
        {"confidence": True},
        {"reviewed": "yes"},
        {"extra": "field"},
        {"audience": {"tlp": "amber", "peers": [], "hops": 0}},
        {"attrs": {"quality": 90}},  # quality belongs to pdq only
        {"attrs": {"note": "x" * 5000}},  # attrs over 4 KiB (spec SIG-3)
    ],
)
def test_each_vocabulary_and_range_rule_applies_to_received_records(
    make_nodes: Callable[..., list[TNode]], fields: dict[str, Any]
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    result = sync.apply_page(a.node, "b.test", 0, _page(_signal(b.node.key, "b.test", 1, **fields)))
    assert (result.applied, result.refused) == (0, 1), result.reasons


def test_older_keyword_fold_is_accepted(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """spec SIG-5: a keyword signed before fold 2 (no attrs.fold) keeps working."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    old = _signal(b.node.key, "b.test", 1, type="keyword", value="codeword", attrs={})
    result = sync.apply_page(a.node, "b.test", 0, _page(old))
    assert (result.applied, result.refused) == (1, 0), result.reasons


def test_fetch_hashes_survives_a_stored_record_outside_the_vocabulary(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    good = _signal(b.node.key, "b.test", 7)
    assert sync.apply_page(a.node, "b.test", 0, _page(good)).applied == 1
    # As an older release could have stored it.
    with a.node.db.write() as session:
        session.execute(update(SignalRow).values(opinion="bogus"))
    r = _fetch_hashes(a)
    assert r.status_code == 200, r.text
    (record,) = r.json()["hashRecords"]
    assert record["CSPFeedbacks"][0]["feedbackValue"] == "QualityUnknown"


def test_local_records_pass_the_same_checks(make_nodes: Callable[..., list[TNode]]) -> None:
    """What we publish, every peer accepts: our own records go through the same path."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    uid = a.submit(type="pdq", value="f" * 60 + "0000", quality=90, indicators=["age_probe"])
    b.pull(a)
    a.client.post(f"/v1/signals/{uid}/retract", headers=a.platform, json={"reason": "mistake"})
    b.pull(a)
    assert b.log_entries("refused") == []
    assert len(b.log_entries("received")) == 2


def test_a_failing_pull_records_last_error_and_the_loop_lives(
    make_nodes: Callable[..., list[TNode]], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    b.submit(type="md5", value="ab" * 16)

    def boom(*_args: Any, **_kw: Any) -> Any:
        raise RuntimeError("unexpected failure while applying")

    monkeypatch.setattr(sync, "apply_page", boom)
    result = a.fed.pull("b.test")
    assert result.error is not None and "RuntimeError" in result.error
    peer = a.client.get("/v1/admin/peers/b.test", headers=a.admin).json()
    assert "RuntimeError" in peer["last_error"]


def test_re_pulling_old_pages_does_not_grow_the_log(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """Observation 7: every re-pull of after=0 used to append a `delivered` entry."""
    import time

    from app.federation.httpsig import sign_request

    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    first = a.submit(type="md5", value="0a" * 16)

    def pull_from_zero() -> list[str]:
        url = a.url + "/federation/v1/records?after=0&limit=100"
        headers = sign_request(
            "GET", url, {}, b"", keyid="b.test", sign=b.node.key.sign, created=int(time.time())
        )
        r = a.client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        return [e["record"]["id"] for e in r.json()["records"]]

    assert pull_from_zero() == [first]
    size = len(a.log_entries())
    for _ in range(5):
        assert pull_from_zero() == [first]
    assert len(a.log_entries()) == size
    assert len(a.log_entries("delivered")) == 1

    # Something new is delivered (and logged) once, with only the new record's digest.
    second = a.submit(type="md5", value="0b" * 16)
    assert pull_from_zero() == [first, second]
    assert pull_from_zero() == [first, second]
    delivered = a.log_entries("delivered")
    assert [d["count"] for d in delivered] == [1, 1]
    assert a.client.get("/v1/admin/peers/b.test", headers=a.admin).json()["records_delivered"] == 2


def test_a_peer_over_its_request_budget_gets_429(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    import time

    from app.federation.httpsig import sign_request
    from app.services.peer_limits import PeerRequestLimiter

    a, b, c = make_nodes("a.test", "b.test", "c.test")
    mesh(a, b, c)
    a.fed.limiter = PeerRequestLimiter(3)  # SIGNET_PEER_REQUESTS_PER_MINUTE=3

    def pull_as(peer: TNode) -> Any:
        url = a.url + "/federation/v1/records?after=0&limit=10"
        headers = sign_request(
            "GET",
            url,
            {},
            b"",
            keyid=peer.origin,
            sign=peer.node.key.sign,
            created=int(time.time()),
        )
        return a.client.get(url, headers=headers)

    assert [pull_as(b).status_code for _ in range(3)] == [200, 200, 200]
    r = pull_as(b)
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    # The budget is per peer: c is served.
    assert pull_as(c).status_code == 200


def test_records_sharing_their_audience_and_vocabulary_are_each_checked(
    make_nodes: Callable[..., list[TNode]],
) -> None:
    """The apply memoises the checks a page's records share (sync._Applier: routing meta,
    may_accept, validate.SharedChecks). A record that differs from an accepted one only in
    its envelope hops or in a type (1 against true) is still refused, before and after it."""
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    good = [_signal(b.node.key, "b.test", i) for i in range(4)]
    bool_confidence = _signal(b.node.key, "b.test", 10, confidence=True)
    bool_hops = _signal(
        b.node.key, "b.test", 11, audience={"tlp": "clear", "peers": [], "hops": True}
    )
    envelopes = [
        RecordEnvelope(good[0], 1),
        RecordEnvelope(good[1], 2),  # the origin itself claims a relay: BadHopCount
        RecordEnvelope(bool_confidence, 1),
        RecordEnvelope(good[2], 1),
        RecordEnvelope(bool_hops, 1),
        RecordEnvelope(good[3], 1),
    ]
    page = RecordsPage(envelopes, 1, "x\n1\ny\n", False)

    result = sync.apply_page(a.node, "b.test", 0, page)

    assert (result.applied, result.refused) == (3, 3), result
    reasons = [r.split(" ", 1)[1] for r in result.reasons]
    assert reasons[0].startswith("BadHopCount"), reasons
    assert reasons[1].startswith("confidence"), reasons
    assert "hops" in reasons[2], reasons
    a.refresh()
    for r in (good[0], good[2], good[3]):
        assert [m["id"] for m in a.match("md5", r["value"])] == [r["id"]]
    assert a.match("md5", good[1]["value"]) == []
