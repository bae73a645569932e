"""Following a federation roster: fetch, verify, store, and say who is a member.

A node that follows a roster (`SIGNET_ROSTER_URL` plus the stewards' keys and quorum) knows every
member's key without peering with it: records relayed from any active member are accepted within
their hop limit, and `peers add` only chooses whom to sync with. Every accepted version is kept
(table `roster`), appended to this node's exchange log (entry kind `roster`, covered by the
checkpoints peers witness) and served at `GET /v1/roster`, so peers compare versions: a peer
serving a newer version brings ours up to date, and two validly signed documents with one
version are kept as equivocation evidence and reported.

Sources: the roster URL (http/https, or a file path) may hold one roster document or a JSON list
of consecutive versions (a steward publishing the whole history lets a node that was offline
catch up); peers' `/v1/roster?version=N` serve each version they accepted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, col, select

from app.crypto.canonical import canonical_json
from app.crypto.keys import VerifierKey
from app.errors import SignetError
from app.federation import roster as rosters
from app.federation.client import PeerLimitExceeded, read_bounded
from app.federation.roster import Roster, RosterError
from app.services.node import Node
from app.services.tx import transaction
from app.storage import peers as peer_store
from app.storage.models import EquivocationRow, PeerRow, RosterRow

log = logging.getLogger("signet.roster")

# A roster is small (a member is ~300 bytes); this bounds what a source can make us read.
MAX_FETCH_BYTES = rosters.MAX_DOCUMENT
FETCH_TIMEOUT = 10.0  # per read
FETCH_DEADLINE = 30.0  # the whole answer


@dataclass
class RosterStatus:
    """What this node knows about its roster (for /v1/admin/roster and `signet roster status`)."""

    following: bool
    federation: str | None = None
    version: int | None = None
    digest: str | None = None
    expires: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)
    last_error: str | None = None
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)
    equivocations: list[dict[str, Any]] = field(default_factory=list)


# Per-process state: the last refresh error and what peers said, for the status view.
_state_lock = threading.Lock()
_last_error: dict[str, str | None] = {}
_peer_views: dict[str, dict[str, dict[str, Any]]] = {}
# Per-process cache of the current roster (the database stays the source of truth).
_cache: dict[str, tuple[float, Roster | None]] = {}
_dropped_cache: dict[str, tuple[float, frozenset[str]]] = {}
_CACHE_SECONDS = 1.0


def trust_root(node: Node) -> tuple[list[VerifierKey], int]:
    settings = node.settings
    keys = [
        VerifierKey.parse(part.strip())
        for part in settings.roster_stewards.split(",")
        if part.strip()
    ]
    return keys, settings.roster_threshold


def _load_row(row: RosterRow) -> Roster:
    return rosters.parse(json.loads(row.document))


def current_in(session: Session) -> Roster | None:
    row = session.exec(select(RosterRow).order_by(col(RosterRow.version).desc()).limit(1)).first()
    return _load_row(row) if row is not None else None


def current(node: Node) -> Roster | None:
    """The latest accepted roster (cached for a second per process)."""
    key = node.db.url
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_SECONDS:
        return hit[1]
    with node.db.read() as session:
        value = current_in(session)
    _cache[key] = (now, value)
    return value


def _forget_cache(node: Node) -> None:
    _cache.pop(node.db.url, None)
    _dropped_cache.pop(node.db.url, None)


def version_in(session: Session, version: int) -> Roster | None:
    row = session.get(RosterRow, version)
    return _load_row(row) if row is not None else None


def excluded_in(session: Session) -> set[str]:
    """Origins this node must not accept or relay records from: members of any accepted version
    that are not active in the current one (suspended or removed)."""
    rows = session.exec(select(RosterRow).order_by(col(RosterRow.version))).all()
    if not rows:
        return set()
    ever: set[str] = set()
    for row in rows:
        ever |= {m.origin for m in _load_row(row).members}
    latest = _load_row(rows[-1])
    return ever - set(latest.active_keys())


def trusted_keys(session: Session) -> dict[str, VerifierKey]:
    """Keys this node believes records by: its pinned peers and the roster's active members.

    The roster wins where both name an origin (a roster rotation re-pins the peer as well), and
    a member the roster suspended or removed is believed nowhere, pinned or not.
    """
    keys = {o: VerifierKey.parse(k) for o, k in peer_store.pinned_keys(session).items()}
    roster = current_in(session)
    if roster is None:
        return keys
    keys.update(roster.active_keys())
    for origin in excluded_in(session):
        keys.pop(origin, None)
    return keys


def excluded(node: Node) -> set[str]:
    with node.db.read() as session:
        return excluded_in(session)


# --- accepting -----------------------------------------------------------------------------


@dataclass
class Outcome:
    accepted: list[int] = field(default_factory=list)
    equivocation: int | None = None
    behind: bool = False  # the source holds a version we could not reach


def _documents(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, dict) and "rosters" in payload:
        payload = payload["rosters"]
    docs = payload if isinstance(payload, list) else [payload]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise RosterError("expected a roster document or a list of them")
    return docs


def offer(node: Node, payload: Any, source: str) -> Outcome:
    """Try to accept the roster version(s) in `payload` (in version order), from `source`."""
    root, root_threshold = trust_root(node)
    candidates = sorted((rosters.parse(d) for d in _documents(payload)), key=lambda r: r.version)
    outcome = Outcome()
    for candidate in candidates:
        with transaction(node) as tx:
            session = tx.session
            ours = session.get(RosterRow, candidate.version)
            latest = current_in(session)
            if ours is not None:
                if ours.digest != candidate.digest and _validly_signed(
                    session, candidate, root, root_threshold
                ):
                    _record_equivocation(tx, candidate, ours)
                    outcome.equivocation = candidate.version
                continue
            if latest is not None and candidate.version <= latest.version:
                continue  # an old version we never saw; nothing to learn from it
            if latest is not None and candidate.version > latest.version + 1:
                outcome.behind = True
                continue  # a gap: the intermediate versions must come first
            rosters.check_update(
                latest, candidate, root_stewards=root, root_threshold=root_threshold
            )
            if latest is not None and latest.federation != candidate.federation:
                raise RosterError("federation name changed")
            session.add(
                RosterRow(
                    version=candidate.version,
                    digest=candidate.digest,
                    document=canonical_json(candidate.document).decode(),
                )
            )
            changes = rosters.members_changed(latest, candidate)
            tx.append(
                "roster",
                {
                    "federation": candidate.federation,
                    "version": candidate.version,
                    "digest": candidate.digest,
                    "source": source[:200],
                    "changes": changes[:100],
                },
            )
            _repin(tx, candidate)
            outcome.accepted.append(candidate.version)
            log.info(
                "roster %s version %d accepted from %s: %s",
                candidate.federation,
                candidate.version,
                source,
                "; ".join(changes) or "no member changes",
            )
    _forget_cache(node)
    return outcome


def _validly_signed(
    session: Session, candidate: Roster, root: list[VerifierKey], root_threshold: int
) -> bool:
    """Whether `candidate` carries the quorum its predecessor (or the trust root) requires."""
    before = version_in(session, candidate.version - 1) if candidate.version > 1 else None
    stewards, threshold = (before.stewards, before.threshold) if before else (root, root_threshold)
    return len(rosters.valid_signers(candidate.document, stewards)) >= threshold


def _record_equivocation(tx: Any, candidate: Roster, ours: RosterRow) -> None:
    origin = f"roster:{candidate.federation}"
    session: Session = tx.session
    seen = session.exec(
        select(EquivocationRow).where(
            col(EquivocationRow.origin) == origin, col(EquivocationRow.size) == candidate.version
        )
    ).first()
    if seen is not None:
        return
    peer_store.save_equivocation(
        session,
        origin,
        candidate.version,
        ours.document,
        canonical_json(candidate.document).decode(),
    )
    tx.append(
        "roster.equivocation",
        {
            "federation": candidate.federation,
            "version": candidate.version,
            "digests": sorted([ours.digest, candidate.digest]),
        },
    )
    log.error(
        "roster equivocation: two validly signed versions %d of %s (%s, %s)",
        candidate.version,
        candidate.federation,
        ours.digest[:16],
        candidate.digest[:16],
    )


def _repin(tx: Any, roster: Roster) -> None:
    """A pinned peer whose roster key changed follows the roster (its policy is unchanged)."""
    session: Session = tx.session
    for member in roster.members:
        row = session.exec(
            select(PeerRow).where(
                col(PeerRow.origin) == member.origin, col(PeerRow.removed_at).is_(None)
            )
        ).first()
        if row is None or row.verifier_key == str(member.key):
            continue
        old = row.verifier_key
        row.verifier_key = str(member.key)
        session.add(row)
        tx.append(
            "peer.repinned",
            {"origin": member.origin, "old_key": old, "new_key": str(member.key), "by": "roster"},
        )
        log.info("re-pinned %s to %s (roster)", member.origin, member.key.key_id)


# --- fetching ------------------------------------------------------------------------------


def read_source(url: str, deadline: float = FETCH_DEADLINE) -> Any:
    """The JSON at a roster URL or file path, size-capped and within a total deadline (a
    mirror dripping bytes cannot hold the roster round, or the node, past it)."""
    if url.startswith(("http://", "https://")):
        started = time.monotonic()
        with (
            httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False) as client,
            client.stream("GET", url) as resp,
        ):
            if resp.status_code != 200:
                raise RosterError(f"{url} answered {resp.status_code}")
            try:
                data = read_bounded(resp, url, started, MAX_FETCH_BYTES, deadline)
            except PeerLimitExceeded as exc:
                raise RosterError(str(exc)) from None
    else:
        path = Path(url)
        if path.stat().st_size > MAX_FETCH_BYTES:
            raise RosterError(f"{url}: roster larger than {MAX_FETCH_BYTES} bytes")
        data = path.read_bytes()
    try:
        return json.loads(data)
    except ValueError:
        raise RosterError(f"{url}: not JSON") from None


def refresh(node: Node) -> Outcome:
    """One round: the configured source, then every pinned peer's view (gossip)."""
    url = node.settings.roster_url
    total = Outcome()
    errors: list[str] = []
    if url:
        try:
            _merge(total, offer(node, read_source(url), url))
        except (SignetError, OSError, httpx.HTTPError) as exc:
            errors.append(f"{url}: {exc}"[:300])
    with node.db.read() as session:
        peers = [(p.origin, p.url) for p in peer_store.list_peers(session)]
    views: dict[str, dict[str, Any]] = {}
    for origin, base in peers:
        views[origin] = _peer_view(node, origin, base, total, errors)
    with _state_lock:
        _last_error[node.db.url] = "; ".join(errors) if errors else None
        _peer_views[node.db.url] = views
    if errors:
        log.warning("roster refresh: %s", "; ".join(errors))
    return total


def _peer_view(
    node: Node, origin: str, base: str, total: Outcome, errors: list[str]
) -> dict[str, Any]:
    ours = current(node)
    try:
        doc = read_source(base.rstrip("/") + "/v1/roster")
    except (SignetError, OSError, httpx.HTTPError) as exc:
        return {"error": str(exc)[:200]}
    try:
        theirs = rosters.parse(doc)
    except RosterError as exc:
        return {"error": str(exc)[:200]}
    view: dict[str, Any] = {"version": theirs.version, "digest": theirs.digest}
    if ours is None or theirs.version >= ours.version:
        try:
            # Catch up through the versions between, one by one, from the same peer.
            start = (ours.version + 1) if ours else 1
            chain = [doc]
            if theirs.version > start:
                chain = [
                    read_source(f"{base.rstrip('/')}/v1/roster?version={v}")
                    for v in range(start, theirs.version)
                ] + [doc]
            _merge(total, offer(node, chain, f"peer {origin}"))
        except (SignetError, OSError, httpx.HTTPError) as exc:
            errors.append(f"peer {origin}: {exc}"[:300])
    ours = current(node)
    if ours is not None:
        if theirs.version < ours.version:
            view["state"] = "behind"
        elif theirs.version > ours.version:
            view["state"] = "ahead"
            errors.append(
                f"peer {origin} holds roster version {theirs.version}; ours is {ours.version}"
            )
        else:
            view["state"] = "same" if theirs.digest == ours.digest else "equivocation"
    return view


def _merge(total: Outcome, one: Outcome) -> None:
    total.accepted += one.accepted
    total.behind = total.behind or one.behind
    if one.equivocation is not None:
        total.equivocation = one.equivocation


def status(node: Node) -> RosterStatus:
    roster = current(node)
    with node.db.read() as session:
        gone = excluded_in(session)
        evidence = [
            {"version": e.size, "found_at": e.created_at.isoformat()}
            for e in peer_store.equivocations(session)
            if e.origin.startswith("roster:")
        ]
    with _state_lock:
        error = _last_error.get(node.db.url)
        views = dict(_peer_views.get(node.db.url, {}))
    out = RosterStatus(
        following=bool(node.settings.roster_url) or roster is not None,
        last_error=error,
        peers=views,
        equivocations=evidence,
    )
    if roster is not None:
        out.federation = roster.federation
        out.version = roster.version
        out.digest = roster.digest
        out.expires = roster.expires.isoformat()
        out.members = [
            {
                "origin": m.origin,
                "key": str(m.key),
                "url": m.url,
                "roles": list(m.roles),
                "status": m.status,
            }
            for m in roster.members
        ]
        out.members += [
            {"origin": o, "status": "removed"}
            for o in sorted(gone - {m.origin for m in roster.members})
        ]
    return out


def member_status(node: Node, origin: str) -> str | None:
    """`active`, `suspended`, `removed`, or None when the origin is not in any roster."""
    roster = current(node)
    if roster is None:
        return None
    member = roster.member(origin)
    if member is not None:
        return member.status
    return "removed" if origin in excluded(node) else None


def dropped_nowait(node: Node) -> frozenset[str]:
    """`dropped` for the match path, which may run on the event loop: the cached set even when
    it is a little past its second (up to 5 s), so no request waits on the database for it. The
    worker's index follower (`app.services.index_sync`) refreshes it on every poll, so in a
    running node it is never older than about a second; a change made in this process clears it
    at once (`_forget_cache`)."""
    hit = _dropped_cache.get(node.db.url)
    if hit is not None and time.monotonic() - hit[0] < 5.0:
        return hit[1]
    return dropped(node)


def dropped(node: Node) -> frozenset[str]:
    """Origins whose records this node stops matching: suspended or removed members, when the
    roster says `on_removal: drop` (cached for a second per process; empty without a roster)."""
    key = node.db.url
    now = time.monotonic()
    hit = _dropped_cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_SECONDS:
        return hit[1]
    roster = current(node)
    value = (
        frozenset(excluded(node))
        if roster is not None and roster.on_removal == "drop"
        else frozenset()
    )
    _dropped_cache[key] = (now, value)
    return value
