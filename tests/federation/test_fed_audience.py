"""Audience rules: tables for each rule, and a property tying may_send to may_accept."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import FederationError, InvalidInput
from app.federation.audience import (
    RecordMeta,
    SharingPolicy,
    Tlp,
    may_accept,
    may_send,
)
from app.federation.errors import (
    AmberRelayed,
    AudienceViolation,
    BadHopCount,
    HopLimitExceeded,
    InvalidPolicy,
    MalformedRecord,
    NotInAudience,
    OriginNotPinned,
    OwnRecordReturned,
    RedRecordReceived,
)

ORIGIN, US, A, B = "origin.example", "us.example", "a.example", "b.example"
ALL = SharingPolicy()


def meta(
    tlp: Tlp = Tlp.GREEN,
    *,
    origin: str = ORIGIN,
    hops: int = 0,
    hop_limit: int = 1,
    peers: tuple[str, ...] = (),
    type: str | None = "pdq",
    categories: tuple[str, ...] = ("grooming",),
) -> RecordMeta:
    return RecordMeta(
        origin=origin,
        tlp=tlp,
        hop_limit=hop_limit,
        hops=hops,
        peers=frozenset(peers),
        type=type,
        categories=frozenset(categories),
    )


# --- may_send ---------------------------------------------------------------------------------


def test_red_never_leaves() -> None:
    d = may_send(meta(Tlp.RED, origin=US), A, ALL, our_origin=US)
    assert not d and "red" in d.reason


def test_amber_only_from_origin_to_named_peers() -> None:
    assert may_send(meta(Tlp.AMBER, origin=US, peers=(A,)), A, ALL, our_origin=US)
    assert not may_send(meta(Tlp.AMBER, origin=US, peers=(A,)), B, ALL, our_origin=US)
    assert not may_send(meta(Tlp.AMBER, origin=US), A, ALL, our_origin=US)
    relayed = meta(Tlp.AMBER, origin=ORIGIN, hops=1, peers=(US, A))
    d = may_send(relayed, A, ALL, our_origin=US)
    assert not d and "relayed" in d.reason


@pytest.mark.parametrize("tlp", [Tlp.GREEN, Tlp.CLEAR])
def test_green_and_clear_relay_within_hop_limit(tlp: Tlp) -> None:
    assert may_send(meta(tlp, origin=US, hop_limit=0), A, ALL, our_origin=US)
    # We received it directly (hops=1): relaying is one relay.
    assert may_send(meta(tlp, hops=1, hop_limit=1), A, ALL, our_origin=US)
    assert not may_send(meta(tlp, hops=1, hop_limit=0), A, ALL, our_origin=US)
    assert may_send(meta(tlp, hops=2, hop_limit=2), A, ALL, our_origin=US)
    assert not may_send(meta(tlp, hops=3, hop_limit=2), A, ALL, our_origin=US)


def test_never_back_to_origin_or_to_ourselves() -> None:
    d = may_send(meta(hops=1), ORIGIN, ALL, our_origin=US)
    assert not d and "origin" in d.reason
    assert not may_send(meta(origin=US), US, ALL, our_origin=US)


def test_named_peers_narrow_green_too() -> None:
    m = meta(origin=US, peers=(A,))
    assert may_send(m, A, ALL, our_origin=US)
    assert not may_send(m, B, ALL, our_origin=US)


def test_policy_filters() -> None:
    m = meta(origin=US, categories=("grooming", "csam"), type="pdq")
    assert may_send(m, A, SharingPolicy.parse("categories=grooming,csam"), our_origin=US)
    assert not may_send(m, A, SharingPolicy.parse("categories=grooming"), our_origin=US)
    assert not may_send(m, A, SharingPolicy.parse("types=md5"), our_origin=US)
    assert may_send(m, A, SharingPolicy.parse("types=md5,pdq"), our_origin=US)
    assert not may_send(m, A, SharingPolicy.parse("tlp=clear"), our_origin=US)
    amber = meta(Tlp.AMBER, origin=US, peers=(A,))
    assert not may_send(amber, A, SharingPolicy.parse("tlp=green,clear"), our_origin=US)
    untyped = meta(origin=US, type=None)
    assert not may_send(untyped, A, SharingPolicy.parse("types=pdq"), our_origin=US)


# --- may_accept -------------------------------------------------------------------------------

PINNED = {ORIGIN, A, B}


@pytest.mark.parametrize(
    ("m", "sender", "error"),
    [
        (meta(origin="stranger.example", hops=1), "stranger.example", OriginNotPinned),
        (meta(origin="stranger.example", hops=2), A, OriginNotPinned),
        (meta(hops=2), "unpinned.example", OriginNotPinned),
        (meta(origin=US, hops=2), A, OwnRecordReturned),
        (meta(Tlp.RED, hops=1), ORIGIN, RedRecordReceived),
        (meta(Tlp.AMBER, hops=2, peers=(US,)), A, AmberRelayed),
        (meta(Tlp.AMBER, hops=1, peers=(A,)), ORIGIN, NotInAudience),
        (meta(Tlp.AMBER, hops=1), ORIGIN, NotInAudience),
        (meta(Tlp.GREEN, hops=2, peers=(A,)), A, NotInAudience),
        (meta(hops=3, hop_limit=1), A, HopLimitExceeded),
        (meta(hops=2, hop_limit=0), A, HopLimitExceeded),
        (meta(hops=2), ORIGIN, BadHopCount),
        (meta(hops=1), A, BadHopCount),
        (meta(hops=0), ORIGIN, BadHopCount),
    ],
)
def test_may_accept_refuses(m: RecordMeta, sender: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        may_accept(m, sender, PINNED, US)


def test_may_accept_allows() -> None:
    may_accept(meta(hops=1), ORIGIN, PINNED, US)
    may_accept(meta(hops=2, hop_limit=1), A, PINNED, US)
    may_accept(meta(Tlp.AMBER, hops=1, peers=(US,)), ORIGIN, PINNED, US)
    may_accept(meta(Tlp.CLEAR, hops=2, peers=(US, A)), A, PINNED, US)


def test_violation_statuses() -> None:
    assert AudienceViolation.status == 403
    assert issubclass(AudienceViolation, FederationError)
    assert BadHopCount.status == 400


NODES = [ORIGIN, US, A, B]


@settings(max_examples=300, deadline=None)
@given(
    tlp=st.sampled_from(list(Tlp)),
    hop_limit=st.integers(0, 3),
    sender=st.sampled_from(NODES),
    receiver=st.sampled_from(NODES),
    hops=st.integers(0, 4),
    peers=st.sets(st.sampled_from(NODES), max_size=3),
)
def test_what_may_be_sent_may_be_accepted(
    tlp: Tlp, hop_limit: int, sender: str, receiver: str, hops: int, peers: set[str]
) -> None:
    # The sender holds a copy that reached it legitimately: 0 hops at the origin, else >= 1.
    held = 0 if sender == ORIGIN else max(hops, 1)
    m = meta(tlp, hops=held, hop_limit=hop_limit, peers=tuple(peers))
    if sender != ORIGIN and tlp is not Tlp.RED:
        try:
            may_accept(m, ORIGIN if held == 1 else A, set(NODES) - {sender}, sender)
        except FederationError:
            return  # the sender would never have kept it
    if tlp is Tlp.RED:
        assert not may_send(m, receiver, ALL, our_origin=sender)
        return
    decision = may_send(m, receiver, ALL, our_origin=sender)
    if decision:
        received = meta(tlp, hops=held + 1, hop_limit=hop_limit, peers=tuple(peers))
        may_accept(received, sender, set(NODES) - {receiver}, receiver)


# --- RecordMeta.from_record -------------------------------------------------------------------


def _record(**audience: Any) -> dict[str, Any]:
    return {
        "origin": ORIGIN,
        "key_id": "k",
        "type": "pdq",
        "categories": ["grooming"],
        "audience": audience,
        "signature": "s",
    }


def test_from_record() -> None:
    m = RecordMeta.from_record(_record(tlp="green", peers=[A], hops=2), hops=1)
    assert m == meta(Tlp.GREEN, hops=1, hop_limit=2, peers=(A,))
    m = RecordMeta.from_record(_record(tlp="amber"), hops=0)
    assert m.hop_limit == 0 and m.peers == frozenset()


@pytest.mark.parametrize(
    "record",
    [
        _record(tlp="purple"),
        _record(tlp=["green"]),
        _record(tlp="green", hops=-1),
        _record(tlp="green", hops=True),
        _record(tlp="green", hops=1000),
        _record(tlp="green", peers="a.example"),
        _record(tlp="green", peers=["A.EXAMPLE"]),
        {**_record(tlp="green"), "origin": 3},
        {**_record(tlp="green"), "categories": "grooming"},
        {**_record(tlp="green"), "type": 1},
        {**_record(tlp="green"), "audience": None},
        [],
    ],
)
def test_from_record_refuses(record: Any) -> None:
    with pytest.raises(MalformedRecord):
        RecordMeta.from_record(record, hops=1)


# --- SharingPolicy ----------------------------------------------------------------------------


def test_policy_parse_and_dict_round_trip() -> None:
    p = SharingPolicy.parse("categories=grooming,csam;types=pdq,md5;tlp=green,amber")
    assert p.categories == frozenset({"grooming", "csam"})
    assert p.types == frozenset({"pdq", "md5"})
    assert p.tlp == {Tlp.GREEN, Tlp.AMBER}
    assert p.to_dict() == {
        "categories": ["csam", "grooming"],
        "types": ["md5", "pdq"],
        "tlp": ["amber", "green"],
    }
    assert SharingPolicy.from_dict(p.to_dict()) == p
    assert SharingPolicy.parse(str(p)) == p
    assert SharingPolicy.parse("") == SharingPolicy()
    assert SharingPolicy.parse(" types = * ; ") == SharingPolicy()
    assert SharingPolicy.parse(str(SharingPolicy())) == SharingPolicy()
    assert SharingPolicy.from_dict({"categories": None}) == SharingPolicy()


@pytest.mark.parametrize(
    "text",
    [
        "tlp=red",
        "tlp=green,red",
        "tlp=*",
        "colour=blue",
        "categories",
        "categories=",
        "categories=a;categories=b",
        "types=PDQ!",
        "categories=unknown_thing",
    ],
)
def test_policy_parse_refuses(text: str) -> None:
    with pytest.raises(InvalidPolicy) as err:
        SharingPolicy.parse(text, known_categories={"grooming", "csam"})
    assert isinstance(err.value, InvalidInput) and err.value.field


@pytest.mark.parametrize(
    "data",
    [
        {"tlp": "green"},
        {"tlp": []},
        {"categories": []},
        {"categories": [1]},
        {"types": "pdq"},
        {"extra": None},
        "categories=csam",
    ],
)
def test_policy_from_dict_refuses(data: Any) -> None:
    with pytest.raises(InvalidPolicy):
        SharingPolicy.from_dict(data)


def test_policy_refuses_red_directly() -> None:
    with pytest.raises(InvalidPolicy):
        SharingPolicy(tlp=frozenset({Tlp.RED}))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_policy_parse_garbage(text: str) -> None:
    with contextlib.suppress(InvalidPolicy):
        SharingPolicy.parse(text)
