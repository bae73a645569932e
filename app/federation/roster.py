"""The federation roster: who the members are, threshold-signed by stewards. Pure.

A roster is a versioned JSON document in the manner of TUF's root metadata:

    {"signed": {"type": "signet-roster", "spec": 1, "federation": "lantern.example",
                "version": 3, "expires": "2027-12-03T00:00:00Z", "previous": "<hex>",
                "stewards": {"threshold": 2, "keys": ["<vkey>", ...]},
                "members": [{"origin": "a.example", "key": "<vkey>", "url": "https://a.example",
                             "roles": ["member", "witness"], "status": "active"}, ...],
                "on_removal": "drop"},
     "signatures": [{"keyid": "<steward key id>", "sig": "<base64 Ed25519>"}, ...]}

- A signature covers `ROSTER_CONTEXT || RFC 8785 canonical JSON of "signed"`; the context keeps
  a roster signature from ever being valid as a record, note or HTTP signature.
- A roster is *valid under* a steward set when signatures by at least `threshold` distinct keys
  of that set verify. Version 1 must be valid under the stewards a node is configured with (its
  trust root); version n+1 must be valid under the stewards of version n AND under its own (so
  stewards rotate only with the old quorum's consent and the new quorum's presence), must name
  version n's digest as `previous`, and must not be expired.
- The digest of a roster is SHA-256 over its signing bytes (signatures excluded): two documents
  with one version and different digests, each valid, are an equivocation - evidence that the
  stewards showed different members to different nodes.

`status` is `active` (records accepted and relayed), `suspended` (neither, key kept) or the
member is absent (removed). `on_removal` says what members do with records they already hold
from a removed or suspended member: `drop` (stop matching and relaying them) or `keep`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.crypto._encoding import b64decode, b64encode
from app.crypto.canonical import canonical_json
from app.crypto.keys import NodeKey, VerifierKey, validate_origin
from app.errors import FederationError, SignetError

__all__ = [
    "ROLES",
    "ROSTER_CONTEXT",
    "Member",
    "Roster",
    "RosterError",
    "check_update",
    "digest",
    "parse",
    "sign",
    "signing_bytes",
    "valid_signers",
]

ROSTER_CONTEXT = b"signet-roster/1\n"
ROLES = ("member", "steward", "witness", "oprf_holder")
STATUSES = ("active", "suspended")
MAX_MEMBERS = 10_000
MAX_DOCUMENT = 4 * 1024 * 1024


class RosterError(FederationError):
    """A roster document that is malformed, insufficiently signed, or not a valid update."""


@dataclass(frozen=True, slots=True)
class Member:
    origin: str
    key: VerifierKey
    url: str
    roles: tuple[str, ...] = ("member",)
    status: str = "active"

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class Roster:
    """A parsed roster; `document` is the JSON it came from (signatures included)."""

    federation: str
    version: int
    expires: datetime
    previous: str | None
    threshold: int
    stewards: tuple[VerifierKey, ...]
    members: tuple[Member, ...]
    on_removal: str
    document: dict[str, Any] = field(repr=False, compare=False)

    @property
    def digest(self) -> str:
        return digest(self.document)

    def member(self, origin: str) -> Member | None:
        return next((m for m in self.members if m.origin == origin), None)

    def active_keys(self) -> dict[str, VerifierKey]:
        """origin -> key of every active member."""
        return {m.origin: m.key for m in self.members if m.active}

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires


def signing_bytes(document: Mapping[str, Any]) -> bytes:
    signed = document.get("signed")
    if not isinstance(signed, dict):
        raise RosterError("roster has no `signed` object")
    return ROSTER_CONTEXT + canonical_json(signed)


def digest(document: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the signing bytes: the roster's identity, signatures excluded."""
    return hashlib.sha256(signing_bytes(document)).hexdigest()


def _str(obj: Mapping[str, Any], name: str, max_len: int = 2048) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise RosterError(f"roster field `{name}` must be a non-empty string")
    return value


def _time(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise RosterError("roster field `expires` must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RosterError("roster field `expires` must be an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise RosterError("roster field `expires` needs a time zone")
    return parsed.astimezone(UTC)


def _vkey(text: Any, what: str) -> VerifierKey:
    if not isinstance(text, str):
        raise RosterError(f"{what} must be a verifier key string")
    try:
        return VerifierKey.parse(text)
    except SignetError as exc:
        raise RosterError(f"{what}: {exc}") from None


def parse(document: Any) -> Roster:
    """Check the shape of a roster document (not its signatures) and parse it."""
    if not isinstance(document, dict) or not isinstance(document.get("signed"), dict):
        raise RosterError("a roster is an object with `signed` and `signatures`")
    if not isinstance(document.get("signatures", []), list):
        raise RosterError("roster `signatures` must be a list")
    signed = document["signed"]
    if signed.get("type") != "signet-roster" or signed.get("spec") != 1:
        raise RosterError("not a signet-roster document of spec 1")
    federation = _str(signed, "federation", 253)
    version = signed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**53:
        raise RosterError("roster `version` must be a positive integer")
    previous = signed.get("previous")
    if version == 1:
        if previous is not None:
            raise RosterError("version 1 has no `previous`")
    elif not isinstance(previous, str) or re.fullmatch(r"[0-9a-f]{64}", previous) is None:
        raise RosterError("roster `previous` must be the previous version's hex digest")
    stewards_obj = signed.get("stewards")
    if not isinstance(stewards_obj, dict) or not isinstance(stewards_obj.get("keys"), list):
        raise RosterError("roster `stewards` must be {threshold, keys}")
    stewards = tuple(_vkey(k, "steward key") for k in stewards_obj["keys"])
    if len({k.key_id for k in stewards}) != len(stewards):
        raise RosterError("a steward key is listed twice")
    threshold = stewards_obj.get("threshold")
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise RosterError("steward `threshold` must be an integer")
    if not 1 <= threshold <= len(stewards):
        raise RosterError(f"steward threshold {threshold} with {len(stewards)} steward key(s)")
    raw_members = signed.get("members")
    if not isinstance(raw_members, list) or len(raw_members) > MAX_MEMBERS:
        raise RosterError(f"roster `members` must be a list of at most {MAX_MEMBERS}")
    members: list[Member] = []
    for raw in raw_members:
        if not isinstance(raw, dict):
            raise RosterError("each member must be an object")
        origin = _str(raw, "origin", 253)
        try:
            validate_origin(origin)
        except SignetError as exc:
            raise RosterError(f"member origin: {exc}") from None
        key = _vkey(raw.get("key"), f"key of {origin}")
        if key.origin != origin:
            raise RosterError(f"the key of {origin} is named {key.origin}")
        url = _str(raw, "url")
        if not url.startswith(("https://", "http://")):
            raise RosterError(f"url of {origin} must be http(s)")
        roles = raw.get("roles", ["member"])
        if not isinstance(roles, list) or any(r not in ROLES for r in roles):
            raise RosterError(f"roles of {origin} must be among {', '.join(ROLES)}")
        status = raw.get("status", "active")
        if status not in STATUSES:
            raise RosterError(f"status of {origin} must be one of {', '.join(STATUSES)}")
        members.append(Member(origin, key, url, tuple(sorted(set(roles))), status))
    if len({m.origin for m in members}) != len(members):
        raise RosterError("a member is listed twice")
    on_removal = signed.get("on_removal", "drop")
    if on_removal not in ("drop", "keep"):
        raise RosterError("`on_removal` must be drop or keep")
    return Roster(
        federation=federation,
        version=version,
        expires=_time(signed.get("expires")),
        previous=previous,
        threshold=threshold,
        stewards=stewards,
        members=tuple(members),
        on_removal=on_removal,
        document=document,
    )


def valid_signers(document: Mapping[str, Any], stewards: Iterable[VerifierKey]) -> set[str]:
    """Key ids of `stewards` whose signature on the document verifies (each counted once)."""
    by_id: dict[str, VerifierKey] = {k.key_id: k for k in stewards}
    msg = signing_bytes(document)
    ok: set[str] = set()
    for entry in document.get("signatures", []) or []:
        if not isinstance(entry, dict):
            continue
        keyid, sig = entry.get("keyid"), entry.get("sig")
        key = by_id.get(keyid) if isinstance(keyid, str) else None
        if key is None or not isinstance(sig, str) or len(sig) > 200:
            continue
        try:
            key.verify(msg, b64decode(sig, "sig"))
        except SignetError:
            continue
        ok.add(key.key_id)
    return ok


def require_quorum(
    roster: Roster, stewards: Iterable[VerifierKey], threshold: int, whose: str
) -> None:
    signers = valid_signers(roster.document, stewards)
    if len(signers) < threshold:
        raise RosterError(
            f"roster version {roster.version} is signed by {len(signers)} of {whose} "
            f"steward key(s); {threshold} required"
        )


def check_update(
    current: Roster | None,
    candidate: Roster,
    *,
    root_stewards: Iterable[VerifierKey],
    root_threshold: int,
    now: datetime | None = None,
) -> None:
    """Raise `RosterError` unless `candidate` may replace `current` (None: nothing trusted yet).

    Without a current roster, the candidate must be valid under the configured trust root and
    its own stewards. With one, it must be exactly the next version, chain to it by digest, be
    valid under the current stewards and its own, and name the same federation.
    """
    if candidate.expired(now):
        raise RosterError(f"roster version {candidate.version} expired at {candidate.expires}")
    if current is None:
        require_quorum(candidate, root_stewards, root_threshold, "the configured")
    else:
        if candidate.federation != current.federation:
            raise RosterError(
                f"roster is for {candidate.federation}, this node follows {current.federation}"
            )
        if candidate.version != current.version + 1:
            raise RosterError(
                f"roster version {candidate.version} does not follow {current.version}"
            )
        if candidate.previous != current.digest:
            raise RosterError(f"roster version {candidate.version} does not chain to ours")
        require_quorum(candidate, current.stewards, current.threshold, "the current")
    require_quorum(candidate, candidate.stewards, candidate.threshold, "its own")


def sign(document: dict[str, Any], key: NodeKey, steward: VerifierKey) -> dict[str, Any]:
    """A copy of the document with this steward's signature added (replacing an older one)."""
    sig = b64encode(key.sign(signing_bytes(document)))
    others = [
        s
        for s in document.get("signatures", [])
        if not (isinstance(s, dict) and s.get("keyid") == steward.key_id)
    ]
    mine = {"keyid": steward.key_id, "sig": sig}
    return {"signed": document["signed"], "signatures": [*others, mine]}


def members_changed(old: Roster | None, new: Roster) -> list[str]:
    """Human-readable changes from `old` to `new` (for logs and `roster show`)."""
    before = {m.origin: m for m in old.members} if old else {}
    after = {m.origin: m for m in new.members}
    out = []
    for origin in sorted(after.keys() - before.keys()):
        out.append(f"added {origin}")
    for origin in sorted(before.keys() - after.keys()):
        out.append(f"removed {origin}")
    for origin in sorted(after.keys() & before.keys()):
        a, b = before[origin], after[origin]
        if a.key != b.key:
            out.append(f"rotated key of {origin} to {b.key.key_id}")
        if a.status != b.status:
            out.append(f"{origin} {b.status}")
        if a.roles != b.roles:
            out.append(f"roles of {origin}: {', '.join(b.roles)}")
        if a.url != b.url:
            out.append(f"url of {origin}: {b.url}")
    return out
