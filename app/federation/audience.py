"""Audience rules: who may receive a signed record, and whether we may accept one. Pure.

A record's `audience` is signed by its origin: `{"tlp": ..., "peers": [origins], "hops": n}`.

- `red` never leaves its origin.
- `amber` goes only from its origin, only to the peers it names; it is never relayed.
- `green` / `clear` may go to any peer and be relayed, keeping the origin's signature, while
  the hop limit allows. If the origin named peers, only those peers may ever hold it (a
  non-empty list narrows the audience at every level; it never widens it).
- A peer's `SharingPolicy` must allow the record's TLP, type and every one of its categories.
- A record never goes back to its origin.

Hop tracking. The signed `audience.hops` is the number of *relays* allowed (0 = only the
origin may hand it over). The number of transfers a copy has made travels beside the signed
record in an unsigned envelope field `hops` (see `pages.RecordEnvelope`): the origin sends 1,
each relay sends what it received plus 1. A copy received with `hops = h` has been relayed
`h - 1` times. Because the field is unsigned, a dishonest relay could lower it; receivers still
check what they can (a relay cannot claim a direct transfer, the origin must send 1).

Narrowing after the fact (issue 9). An origin that removes a peer, or narrows what it shares
with one, names that peer in `audience.exclude` of every signal it signs from then on (its
removed peers, and its current peers whose sharing policy does not allow that record). The list
is signed with the record, so no relay can drop it: `may_send` never hands the record to an
excluded peer at any hop (the origin itself follows its current policy instead), and
`may_accept` refuses a record that excludes us. Retractions are not held back by it: a peer
that got the signal earlier should learn that it was withdrawn.

Retractions and feedback are routed by the same rules, so they should carry the audience,
type and categories of the signal they refer to.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.federation.errors import (
    AmberRelayed,
    BadHopCount,
    HopLimitExceeded,
    InvalidPolicy,
    MalformedRecord,
    NotInAudience,
    OriginNotPinned,
    OwnRecordReturned,
    RedRecordReceived,
)

__all__ = [
    "MAX_HOPS",
    "Decision",
    "RecordMeta",
    "SharingPolicy",
    "Tlp",
    "is_origin",
    "may_accept",
    "may_send",
]

MAX_HOPS = 16
"""Upper bound on a signed hop limit; anything larger is treated as malformed."""

MAX_EXCLUDED = 1024
"""Upper bound on `audience.exclude` (origins an origin keeps its record away from)."""

_ORIGIN_RE = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")


class Tlp(StrEnum):
    RED = "red"
    AMBER = "amber"
    GREEN = "green"
    CLEAR = "clear"


def is_origin(text: object) -> bool:
    """True for a lowercase DNS-like origin name (`ngo.example`)."""
    return isinstance(text, str) and len(text) <= 253 and _ORIGIN_RE.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """The routing facts of one record copy.

    `hops` is how many transfers this copy made to reach the node holding it: 0 at its
    origin, the envelope's `hops` once received.
    """

    origin: str
    tlp: Tlp
    hop_limit: int
    hops: int
    peers: frozenset[str] = frozenset()
    type: str | None = None
    categories: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    @classmethod
    def from_record(cls, record: Mapping[str, Any], hops: int) -> RecordMeta:
        """Read origin, audience, type and categories from a signed record dict.

        Raises `MalformedRecord` for any wrong shape. A missing `audience.hops` means 0 (no
        relay) and missing `peers` means none named: the narrower reading.
        """
        if not isinstance(record, Mapping):
            raise MalformedRecord("record is not an object")
        origin = record.get("origin")
        if not is_origin(origin):
            raise MalformedRecord("record origin is not a valid origin name")
        assert isinstance(origin, str)
        audience = record.get("audience")
        if not isinstance(audience, Mapping):
            raise MalformedRecord("record has no audience object")
        raw_tlp = audience.get("tlp")
        if not isinstance(raw_tlp, str) or raw_tlp not in Tlp.__members__.values():
            raise MalformedRecord("audience.tlp must be red, amber, green or clear")
        tlp = Tlp(raw_tlp)
        hop_limit = audience.get("hops", 0)
        if isinstance(hop_limit, bool) or not isinstance(hop_limit, int):
            raise MalformedRecord("audience.hops must be an integer")
        if not 0 <= hop_limit <= MAX_HOPS:
            raise MalformedRecord(f"audience.hops must be in 0..{MAX_HOPS}")
        peers = audience.get("peers", [])
        if not isinstance(peers, list) or not all(is_origin(p) for p in peers):
            raise MalformedRecord("audience.peers must be a list of origin names")
        exclude = audience.get("exclude", [])
        if (
            not isinstance(exclude, list)
            or len(exclude) > MAX_EXCLUDED
            or not all(is_origin(p) for p in exclude)
        ):
            raise MalformedRecord(
                f"audience.exclude must be a list of at most {MAX_EXCLUDED} origin names"
            )
        rtype = record.get("type")
        if rtype is not None and not isinstance(rtype, str):
            raise MalformedRecord("type must be a string")
        categories = record.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise MalformedRecord("categories must be a list of strings")
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
            raise BadHopCount("hops must be a non-negative integer")
        return cls(
            origin=origin,
            tlp=tlp,
            hop_limit=hop_limit,
            hops=hops,
            peers=frozenset(peers),
            type=rtype,
            categories=frozenset(categories),
            exclude=frozenset(exclude),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """A routing answer with the reason to log. Truthy when allowed."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


_DEFAULT_TLP = frozenset({Tlp.GREEN, Tlp.CLEAR, Tlp.AMBER})
_POLICY_KEYS = ("categories", "types", "tlp")


def _names(field_name: str, values: object, vocab: Collection[str] | None) -> frozenset[str]:
    if not isinstance(values, list | tuple | set | frozenset) or not values:
        raise InvalidPolicy(field_name, "must be a non-empty list (or null for all)")
    out: set[str] = set()
    for v in values:
        if not isinstance(v, str) or not _NAME_RE.fullmatch(v):
            raise InvalidPolicy(field_name, f"{v!r} is not a lowercase name")
        if vocab is not None and v not in vocab:
            raise InvalidPolicy(field_name, f"unknown value {v!r}")
        out.add(v)
    return frozenset(out)


def _tlps(values: object) -> frozenset[Tlp]:
    if not isinstance(values, list | tuple | set | frozenset) or not values:
        raise InvalidPolicy("tlp", "must be a non-empty list")
    out: set[Tlp] = set()
    for v in values:
        try:
            level = Tlp(v)
        except ValueError:
            raise InvalidPolicy("tlp", f"{v!r} is not amber, green or clear") from None
        if level is Tlp.RED:
            raise InvalidPolicy("tlp", "red never leaves this node")
        out.add(level)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class SharingPolicy:
    """What we send to one peer. `None` for categories or types means all of them."""

    categories: frozenset[str] | None = None
    types: frozenset[str] | None = None
    tlp: frozenset[Tlp] = field(default=_DEFAULT_TLP)

    def __post_init__(self) -> None:
        if Tlp.RED in self.tlp:
            raise InvalidPolicy("tlp", "red never leaves this node")

    def allows(self, meta: RecordMeta) -> Decision:
        if meta.tlp not in self.tlp:
            return Decision(False, f"policy does not share tlp {meta.tlp.value}")
        if self.types is not None and meta.type not in self.types:
            return Decision(False, f"policy does not share type {meta.type!r}")
        if self.categories is not None and not meta.categories <= self.categories:
            extra = ", ".join(sorted(meta.categories - self.categories))
            return Decision(False, f"policy does not share categories {extra}")
        return Decision(True, "policy allows it")

    def to_dict(self) -> dict[str, list[str] | None]:
        return {
            "categories": None if self.categories is None else sorted(self.categories),
            "types": None if self.types is None else sorted(self.types),
            "tlp": sorted(t.value for t in self.tlp),
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        known_categories: Collection[str] | None = None,
        known_types: Collection[str] | None = None,
    ) -> SharingPolicy:
        """Validate and build; raises `InvalidPolicy` naming the bad field."""
        if not isinstance(data, Mapping):
            raise InvalidPolicy("policy", "must be an object")
        unknown = set(data) - set(_POLICY_KEYS)
        if unknown:
            raise InvalidPolicy(str(sorted(map(str, unknown))[0]), "unknown policy field")
        cats = data.get("categories")
        types = data.get("types")
        return cls(
            categories=None if cats is None else _names("categories", cats, known_categories),
            types=None if types is None else _names("types", types, known_types),
            tlp=_tlps(data["tlp"]) if data.get("tlp") is not None else _DEFAULT_TLP,
        )

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        known_categories: Collection[str] | None = None,
        known_types: Collection[str] | None = None,
    ) -> SharingPolicy:
        """Parse `categories=grooming,csam;types=pdq,md5;tlp=green,amber`.

        Omitted parts keep their defaults; `*` means all (categories and types only).
        """
        data: dict[str, list[str] | None] = {}
        for part in (p.strip() for p in text.split(";")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in _POLICY_KEYS:
                raise InvalidPolicy(key or "policy", "expected categories=, types= or tlp=")
            if key in data:
                raise InvalidPolicy(key, "given twice")
            values = [v.strip().lower() for v in value.split(",") if v.strip()]
            data[key] = None if values == ["*"] and key != "tlp" else values
        return cls.from_dict(data, known_categories=known_categories, known_types=known_types)

    def __str__(self) -> str:
        d = self.to_dict()
        return ";".join(f"{k}={'*' if v is None else ','.join(v)}" for k, v in d.items())


def may_send(meta: RecordMeta, peer: str, policy: SharingPolicy, *, our_origin: str) -> Decision:
    """May we (`our_origin`, holding this copy) hand the record to `peer`?"""
    if peer == meta.origin:
        return Decision(False, "never send a record back to its origin")
    if peer == our_origin:
        return Decision(False, "peer is this node")
    we_are_origin = meta.origin == our_origin
    if meta.tlp is Tlp.RED:
        return Decision(False, "tlp red never leaves its origin")
    if meta.peers and peer not in meta.peers:
        return Decision(False, "peer is not named in the record's audience")
    if not we_are_origin and peer in meta.exclude:
        # The origin follows its current policy; everyone else its signed exclusions.
        return Decision(False, "the record's origin excluded this peer")
    if meta.tlp is Tlp.AMBER:
        if not we_are_origin:
            return Decision(False, "tlp amber is never relayed")
        if not meta.peers:
            return Decision(False, "tlp amber names no peers")
    elif not we_are_origin and meta.hops > meta.hop_limit:
        # Sending makes `meta.hops` relays in all; the origin's own send is not a relay.
        return Decision(False, f"hop limit {meta.hop_limit} reached")
    return policy.allows(meta)


def may_accept(
    meta: RecordMeta, from_peer: str, pinned_origins: Iterable[str], our_origin: str
) -> None:
    """Raise an `AudienceViolation` (or `BadHopCount`) unless we may keep this record.

    `meta.hops` is the envelope's hop count as received; `from_peer` is the authenticated
    sender of the page (the HTTP signature's keyid).
    """
    pinned = frozenset(pinned_origins)
    if meta.origin == our_origin:
        raise OwnRecordReturned(f"{from_peer} sent back one of our own records")
    if from_peer not in pinned:
        raise OriginNotPinned(f"peer {from_peer} is not pinned")
    if meta.origin not in pinned:
        raise OriginNotPinned(f"origin {meta.origin} is not pinned (relayed by {from_peer})")
    if meta.tlp is Tlp.RED:
        raise RedRecordReceived(f"tlp red record from {meta.origin} reached us via {from_peer}")
    direct = from_peer == meta.origin
    if meta.tlp is Tlp.AMBER and not direct:
        raise AmberRelayed(f"tlp amber record of {meta.origin} relayed by {from_peer}")
    if (meta.peers or meta.tlp is Tlp.AMBER) and our_origin not in meta.peers:
        raise NotInAudience(f"record of {meta.origin} does not name {our_origin}")
    if our_origin in meta.exclude and not direct:
        raise NotInAudience(f"record of {meta.origin} excludes {our_origin}")
    if direct and meta.hops != 1:
        raise BadHopCount(f"{from_peer} sent its own record with hops={meta.hops}, expected 1")
    if not direct and meta.hops < 2:
        raise BadHopCount(f"relay {from_peer} claims hops={meta.hops}, at least 2 expected")
    if meta.hops - 1 > meta.hop_limit:
        raise HopLimitExceeded(
            f"record of {meta.origin} relayed {meta.hops - 1} times, limit {meta.hop_limit}"
        )
