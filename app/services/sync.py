"""Pull sync: the pages we serve to a peer, and applying the pages we pull from one.

Serving (`GET /federation/v1/records?after=&limit=`). The cursor is a position in OUR log:
every signal and feedback row carries `change_seq`, the log index of its latest change
(gap-free and commit-ordered, see storage/db.py). A cursor counts log entries looked at; a
page walks rows with `after <= change_seq < log size` in that order and turns each into the
record a peer needs: a live signal -> its signed record; a retracted one -> the origin's
retraction; feedback -> the verdict, routed only toward the signal's origin. Every record
passes `audience.may_send` (audience, hop limit, the peer's policy, never back to its
origin). Rows the peer may not see still move the cursor. `next` is one past the change_seq
of the last row looked at, or the log size when everything was looked at, so a page is the
same on any worker and a restart resumes exactly. One `delivered` log entry per non-empty
page: {to, after, up_to, count, digests} for its open records, and one commitment-only entry
for its amber ones (no recipient, no digest in clear).

Applying. Every record is verified against its ORIGIN's pinned key, whoever relayed it, and
checked with `audience.may_accept`; it is applied at most once per (origin, kind, id, version)
and logged as `received` {from, digest, record}, or for amber records the salted commitment
alone. Which records were received is kept for that dedupe in `received_record`, except for an
open signal that created or replaced its signal row: that row is its receipt (`_signal`). A
signal older than a version already received, held or earlier in the page is counted a
duplicate once its signature is checked, and not applied. Refusals from an
authenticated peer are logged too (one `refused` entry per page, first reasons only), so a peer
cannot fill our log but its misbehaviour is on record. The peer's cursor is stored in the same
transaction, and only if it still equals the page's `after`: a crash mid-pull loses nothing and
applies nothing twice, and two pullers of the same peer cannot both apply one page.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from app.crypto.canonical import canonical_json
from app.crypto.keys import VerifierKey
from app.crypto.records import verify_record
from app.errors import InvalidInput, SignetError
from app.federation import validate
from app.federation.audience import RecordMeta, is_origin, may_accept, may_send
from app.federation.errors import MalformedRecord, OwnRecordReturned
from app.federation.pages import MAX_PAGE_RECORDS, RecordEnvelope, RecordsPage
from app.services import feedback as feedback_service
from app.services import log as exchange_log
from app.services import receipts, rekey
from app.services import roster as roster_svc
from app.services.node import Node
from app.services.peers import policy_of
from app.services.tx import COMMITTED_TLP, transaction
from app.signals.match_index import match_key
from app.storage import log as log_store
from app.storage import peers as store
from app.storage import tombstones as tombstone_store
from app.storage.models import FeedbackRow, SignalRow
from app.storage.types import utcnow

log = logging.getLogger("signet.sync")

DEFAULT_PAGE = 500
_SCAN_CHUNK = 500
_MAX_LOGGED_REASONS = 20


# SHA-256 of the canonical record, signature included: what reconcile compares.
digest_hex = receipts.record_digest


# --- serving --------------------------------------------------------------------------------


@dataclass
class _Candidate:
    seq: int
    record: dict[str, Any]
    meta: RecordMeta | None  # None: already routed (feedback goes only toward its origin)
    hops: int  # envelope hops to send
    tlp: str  # the signal's TLP (feedback and retractions take their signal's)


def _signal_candidate(row: SignalRow, now: datetime) -> _Candidate | None:
    meta = RecordMeta.from_record(row.record, row.hops)
    if row.status == "retracted":
        if row.retraction is None:
            return None
        record = row.retraction
        # A retraction reaches even peers the origin excluded later: they may hold the signal.
        meta = replace(meta, exclude=frozenset())
    elif row.status == "expired" or row.valid_until <= now:
        return None  # expired signals are not handed on; peers expire their copies themselves
    else:
        record = row.record
    return _Candidate(row.change_seq, record, meta, row.hops + 1, row.tlp)


def _feedback_target(fb: FeedbackRow, signal: SignalRow | None, our_peers: set[str]) -> str | None:
    """Where a verdict goes: to the signal's origin, or toward it through the node we got the
    signal from when the origin is not our peer. Never anywhere else."""
    if signal is None or signal.origin == fb.origin:
        return None
    if signal.received_from is None:
        return None  # our own signal: the verdict stays with us
    if signal.origin in our_peers:
        return signal.origin
    return signal.received_from


# Approximate bytes of records per page (values dominate); half the default max_page_bytes.
_PAGE_BYTES = 4 * 1024 * 1024


def build_page(node: Node, peer: str, after: int, limit: int) -> RecordsPage:
    """The page of records `peer` (an authenticated, current peer) may see after `after`."""
    if after < 0:
        raise InvalidInput("after", "must be >= 0")
    limit = max(1, min(limit, MAX_PAGE_RECORDS))
    now = utcnow()
    envelopes: list[RecordEnvelope] = []
    seqs: list[int] = []  # change_seq of each envelope's row
    restricted: list[bool] = []  # per envelope: logged only as a commitment
    with node.db.read() as session:
        row = store.get_peer(session, peer)
        if row is None:
            raise InvalidInput("peer", "not a current peer")
        policy = policy_of(row)
        our_peers = set(store.pinned_keys(session))
        # Members the roster suspended or removed: nothing of theirs is relayed any more.
        # (Our own records are not ours to police: peers refuse them if we were removed.)
        barred = roster_svc.excluded_in(session) - {node.origin}
        # Size first: everything with change_seq < size is committed and visible after it.
        upto = log_store.log_size(session)
        cursor = after
        full = False
        budget = _PAGE_BYTES  # vpdq records are large: a page stops well within a peer's cap
        while not full:
            sigs = store.signals_changed(session, cursor, upto, _SCAN_CHUNK)
            fbs = store.feedback_changed(session, cursor, upto, _SCAN_CHUNK)
            if not sigs and not fbs:
                cursor = upto
                break
            # Both lists hold every row below `bound`; from it on, one of them may have more.
            bound = upto
            if len(sigs) == _SCAN_CHUNK:
                bound = min(bound, sigs[-1].change_seq + 1)
            if len(fbs) == _SCAN_CHUNK:
                bound = min(bound, fbs[-1].change_seq + 1)
            signals_for_fb = store.signals_by_keys(
                session, [(f.signal_origin, f.signal_uid) for f in fbs if f.change_seq < bound]
            )
            items: list[tuple[int, SignalRow | FeedbackRow]] = [(s.change_seq, s) for s in sigs]
            items += [(f.change_seq, f) for f in fbs]
            items.sort(key=lambda x: x[0])
            for seq, item in items:
                if seq >= bound:
                    break
                cand = (
                    None
                    if item.origin in barred
                    else _candidate(item, node, peer, our_peers, signals_for_fb, now)
                )
                if cand is not None and (
                    cand.meta is None or may_send(cand.meta, peer, policy, our_origin=node.origin)
                ):
                    envelopes.append(RecordEnvelope(cand.record, cand.hops))
                    seqs.append(seq)
                    restricted.append(cand.tlp in COMMITTED_TLP)
                    value = cand.record.get("value")
                    budget -= 1024 + (len(value) if isinstance(value, str) else 0)
                cursor = seq + 1
                if len(envelopes) >= limit or budget <= 0:
                    full = True
                    break
            else:
                cursor = bound
    has_more = full and cursor < upto
    checkpoint = exchange_log.latest_checkpoint(node).note
    page = RecordsPage(envelopes, cursor, checkpoint, has_more)
    if envelopes:
        _log_delivered(node, peer, after, cursor, envelopes, seqs, restricted)
    return page


def _candidate(
    item: SignalRow | FeedbackRow,
    node: Node,
    peer: str,
    our_peers: set[str],
    signals: dict[tuple[str, str], SignalRow],
    now: datetime,
) -> _Candidate | None:
    try:
        if isinstance(item, SignalRow):
            return _signal_candidate(item, now)
        signal = signals.get((item.signal_origin, item.signal_uid))
        if signal is None or signal.tlp == "red" or item.origin == peer:
            return None
        if _feedback_target(item, signal, our_peers) != peer:
            return None
        # Our own verdicts go out as a first transfer, relayed ones as a relay.
        return _Candidate(
            item.change_seq,
            item.record,
            None,
            1 if item.origin == node.origin else 2,
            signal.tlp,
        )
    except MalformedRecord:
        log.warning("skipping a stored record with an unusable audience (seq %s)", item.change_seq)
        return None


def _log_delivered(
    node: Node,
    peer: str,
    after: int,
    up_to: int,
    envelopes: list[RecordEnvelope],
    seqs: list[int],
    restricted: list[bool],
) -> None:
    """Log the records of this page not delivered to `peer` before (issue 9, observation 7):
    a row is new if its change_seq is at or past the peer's `delivered_upto` mark, so a peer
    re-pulling old pages (after=0, again and again) adds nothing to our log.

    The open (green/clear) records go in one `delivered` entry with `to` and their digests;
    the restricted (amber) ones in one commitment-only entry: naming the recipient of an amber
    record, or its digest, in clear would widen its audience to every reader of the log."""
    with transaction(node) as tx:
        row = store.get_peer(tx.session, peer)
        mark = row.delivered_upto if row is not None else 0
        new = [(e, r) for e, seq, r in zip(envelopes, seqs, restricted, strict=True) if seq >= mark]
        if not new:
            return
        digests = [digest_hex(e.record) for e, r in new if not r]
        closed = [digest_hex(e.record) for e, r in new if r]
        if digests:
            tx.append(
                "delivered",
                {
                    "to": peer,
                    "after": after,
                    "up_to": up_to,
                    "count": len(digests),
                    "digests": digests,
                },
            )
        if closed:
            body = {"to": peer, "after": after, "up_to": up_to, "digests": closed}
            tx.append_committed("delivered", body, "amber")
        if row is not None:
            row.records_delivered += len(new)
            row.delivered_upto = max(mark, up_to)
            tx.session.add(row)


# --- applying -------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    applied: int = 0
    duplicate: int = 0
    refused: int = 0
    stale: bool = False  # another puller applied this page first
    reasons: list[str] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _time(value: Any, name: str) -> datetime:
    try:
        return validate.parse_time(value, name)
    except validate.RecordInvalid as exc:
        raise _Refused(f"{name}: {exc.reason}") from None


class _Applier:
    """Applies one page inside one write transaction."""

    def __init__(self, tx: Any, peer: str, keys: dict[str, VerifierKey]) -> None:
        self.tx = tx
        self.node: Node = tx.node
        self.peer = peer
        self.keys = keys
        self.result = ApplyResult()
        self.new_signals: dict[tuple[str, str], dict[str, Any]] = {}
        self.new_feedback: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        # (origin, id) -> the highest version of that signal with a received_record row
        self.newest_received: dict[tuple[str, str], int] = {}
        self.seen_keys: set[store.RecordKey] = set()
        self.recount: list[SignalRow] = []
        self.new_tombstones: list[dict[str, Any]] = []
        # id(record) -> its canonical bytes, for the records of this page (alive until run ends)
        self.canonical: dict[int, bytes] = {}
        self.key_cache: dict[tuple[str, str], VerifierKey | None] = {}
        # may_accept wants the trusted origins as a set; built once per page, not per record.
        self.trusted = frozenset(keys)
        self.now = utcnow()
        # Work the records of one page share, done once per distinct input (exact keys; only
        # what passed is kept, so a record that differs in any way is checked in full).
        self.shared_checks = validate.SharedChecks()
        self.metas: dict[tuple[int, bytes], RecordMeta] = {}
        self.accepted: set[tuple[int, bytes]] = set()  # keys of `metas` that may_accept passed

    def run(self, envelopes: list[RecordEnvelope]) -> None:
        session = self.tx.session
        parsed: list[tuple[RecordEnvelope, store.RecordKey | None]] = []
        refs: set[tuple[str, str]] = set()
        for env in envelopes:
            key = _record_key(env.record)
            parsed.append((env, key))
            if key is not None:
                kind = key[1]
                if kind == "signal":
                    refs.add((key[0], key[2]))
                else:
                    sig = env.record.get("signal")
                    if isinstance(sig, dict) and isinstance(sig.get("origin"), str):
                        refs.add((sig["origin"], str(sig.get("id"))))
        have, self.newest_received = store.received_keys(
            session, [k for _, k in parsed if k is not None]
        )
        self.signals = store.signals_by_keys(session, refs)
        self.tombstones = tombstone_store.tombstones_for(session, refs)
        signals = self.signals
        for env, key in parsed:
            try:
                if key is None:
                    raise _Refused("record kind, id or version unusable")
                if key in have or key in self.seen_keys:
                    self.result.duplicate += 1
                    continue
                if key[1] == "signal":
                    # An open signal's receipt is its signal row (see `_signal`): held with
                    # exactly this version and received from a peer, it was applied before.
                    # (One of our own records is refused below, as before.)
                    held = signals.get((key[0], key[2]))
                    if (
                        held is not None
                        and held.version == key[3]
                        and held.received_from is not None
                    ):
                        self.result.duplicate += 1
                        continue
                if self._apply(env, key):
                    self.result.applied += 1
                else:
                    self.result.duplicate += 1
                self.seen_keys.add(key)
            except _Refused as exc:
                self._refuse(env, exc.reason)
            except validate.RecordInvalid as exc:
                self._refuse(env, f"{exc.field}: {exc.reason}")
            except Exception as exc:  # one bad record never aborts its page
                self._refuse(env, f"{type(exc).__name__}: {exc}")
        store.insert_signals(session, list(self.new_signals.values()))
        store.insert_feedback(session, self.new_feedback)
        for signal in {id(s): s for s in self.recount}.values():
            feedback_service.recount(session, signal)
            session.add(signal)
        store.add_received(session, self.received)
        tombstone_store.add_tombstones(session, self.new_tombstones)

    def _refuse(self, env: RecordEnvelope, reason: str) -> None:
        self.result.refused += 1
        if len(self.result.reasons) < _MAX_LOGGED_REASONS:
            try:
                digest = "restricted" if _claims_restricted(env.record) else digest_hex(env.record)
            except SignetError:
                digest = "unhashable"
            self.result.reasons.append(f"{digest[:16]} {reason[:200]}")

    def _verify(self, record: dict[str, Any], canonical: bytes) -> None:
        verify_record(
            record, lambda origin: self._key_for(origin, record.get("key_id")), canonical=canonical
        )

    def _key_for(self, origin: str, key_id: Any) -> VerifierKey | None:
        """The key `origin`'s record with `key_id` verifies under, looked up once per page: a
        peer's records signed before its key rotation verify under the retired key, which is
        a query (and a page of them would be a query per record)."""
        if not isinstance(key_id, str):
            return self.keys.get(origin)
        found = self.key_cache.get((origin, key_id), self.key_cache)
        if found is self.key_cache:
            found = self.key_cache[(origin, key_id)] = rekey.key_for(
                self.tx.session, self.keys, origin, key_id
            )
        return found  # type: ignore[return-value]

    def _log(
        self, record: dict[str, Any], tlp: str, key: store.RecordKey, *, receipt: bool = True
    ) -> int:
        """Append the record's `received` entry; with `receipt`, also its received_record row
        (the dedupe's; `_signal` says when a signal needs none)."""
        canonical = self.canonical.get(id(record))
        if canonical is None:
            canonical = canonical_json(record)
        digest = hashlib.sha256(canonical).hexdigest()
        # A restricted record's entry is its salted commitment and nothing else: an unsalted
        # digest (or the sender's name) beside it would link it to the sender's log and to the
        # record for anyone holding it, even once the salt is erased. The digest and sender stay
        # in the database (received_record), not in the log.
        extra = {} if tlp in COMMITTED_TLP else {"from": self.peer, "digest": digest}
        idx: int = self.tx.append_record("received", record, tlp, record_bytes=canonical, **extra)
        if not receipt:
            return idx
        origin, kind, rid, version = key
        self.received.append(
            {
                "origin": origin,
                "kind": kind,
                "rid": rid,
                "version": version,
                "digest": digest,
                "received_from": self.peer,
                "log_idx": idx,
                "created_at": self.now,
            }
        )
        return idx

    def _apply(self, env: RecordEnvelope, key: store.RecordKey) -> bool:
        """Apply one record; False if it changed nothing (an older version than we hold)."""
        record = env.record
        origin = key[0]
        if origin == self.node.origin:
            raise OwnRecordReturned(f"{self.peer} sent back one of our own records")
        if origin not in self.keys:
            raise _Refused(f"origin {origin} is not pinned")
        # Size before the signature: verifying re-encodes the whole record. The canonical
        # bytes are kept for the record's digest and log entry (one encoding, not three).
        canonical = self.canonical[id(record)] = validate.check_record_size(
            record, self.node.settings.max_record_bytes
        )
        self._verify(record, canonical)
        kind = key[1]
        if kind == "signal":
            return self._signal(env, key)
        if kind == "retraction":
            self._retraction(env, key)
        else:
            self._feedback(env, key)
        return True

    def _accepted_meta(self, record: dict[str, Any], hops: int) -> RecordMeta:
        """`RecordMeta.from_record(record, hops)` that `may_accept` passed for this page's
        sender, each done once per distinct routing input in a page. The key is the exact JSON
        (orjson) of everything `from_record` reads, and `may_accept`'s only other inputs (the
        page's sender, trusted set and our origin) are fixed for the page; only a meta that was
        built (so passed its checks) is kept, and RecordMeta is immutable. A key stands for
        its one meta, so "accepted" is remembered by key (hashing the meta itself was a Python
        call per record)."""
        try:
            key = (
                hops,
                orjson.dumps(
                    [
                        record.get("origin"),
                        record.get("audience"),
                        record.get("type"),
                        record.get("categories", []),
                    ]
                ),
            )
        except (TypeError, ValueError):  # not plain JSON: no memo, from_record refuses it
            meta = RecordMeta.from_record(record, hops)
            may_accept(meta, self.peer, self.trusted, self.node.origin)
            return meta
        found = self.metas.get(key)
        if found is None:
            found = self.metas[key] = RecordMeta.from_record(record, hops)
        meta = found
        if key not in self.accepted:
            may_accept(meta, self.peer, self.trusted, self.node.origin)
            self.accepted.add(key)
        return meta

    def _signal(self, env: RecordEnvelope, key: store.RecordKey) -> bool:
        record = env.record
        meta = self._accepted_meta(record, env.hops)
        checked = validate.check_signal(
            record,
            extra_categories=self.node.settings.extra_categories,
            max_bytes=None,  # checked in _apply, before the signature
            memo=self.shared_checks,
        )
        canon = checked.canon
        attrs: dict[str, Any] = record["attrs"]  # as signed (a fold marker may be older)
        indicators = checked.indicators
        confidence = checked.confidence
        valid_from, valid_until = checked.valid_from, checked.valid_until
        origin, _, uid, version = key
        held = self.signals.get((origin, uid))
        if held is not None and held.version >= version:
            return False  # an older version than we hold (or ours under another record)
        if self.newest_received.get((origin, uid), 0) > version:
            # An older version than one received before, whose row is gone (purged) or was
            # never changed (held retracted): applying it would bring the signal back.
            return False
        # The same rules for a row this page creates (held is then None).
        pending = self.new_signals.get((origin, uid))
        if pending is not None and pending["version"] > version:
            return False  # an older version than one earlier in this page
        retracted = (held is not None and held.status == "retracted") or (
            pending is not None and pending["status"] == "retracted"
        )
        # Enum `.value` is a descriptor call (~0.4 us): read once per record, not five times.
        tlp = meta.tlp.value
        type_value = canon.type.value
        # The signal row this creates or replaces holds what a received_record row would:
        # origin, id, version, sender, and change_seq = this entry, whose own body has the
        # sender and digest. So an open record gets no row (run() dedupes it by the signal
        # row; purge_before writes one when it deletes the signal). A restricted record keeps
        # its row: its entry is a salted commitment, and the row is the only place its digest
        # and sender are kept. So does a newer version of a signal held (or pending in this
        # page) retracted: its row is not changed, so only the received row remembers it.
        receipt = tlp in COMMITTED_TLP or retracted
        idx = self._log(record, tlp, key, receipt=receipt)
        key_id = attrs.get("key_id")
        values: dict[str, Any] = {
            "uid": uid,
            "origin": origin,
            "version": version,
            "type": type_value,
            "value": canon.value,
            "match_key": match_key(
                type_value, canon.value, key_id if isinstance(key_id, str) else None
            ),
            "attrs": dict(attrs),
            "categories": checked.categories,  # sorted and unique, as sorted(meta.categories)
            "indicators": indicators,
            "opinion": checked.opinion,
            "confidence": confidence,
            "reviewed": record.get("reviewed") is True,
            "tlp": tlp,
            "audience_peers": sorted(meta.peers),
            "audience_hops": meta.hop_limit,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "updated_at": self.now,
            "change_seq": idx,
            "received_from": self.peer,
            "hops": env.hops,
            "record": record,
        }
        if retracted:
            return True  # a retraction stands for every version
        if held is not None:
            for name, value in values.items():
                setattr(held, name, value)
            held.status = "active"
            self.tx.session.add(held)
            return True
        tombstone = self.tombstones.get((origin, uid))
        values.update(
            status="active",
            retracted_at=None,
            retract_reason=None,
            retraction=None,
            created_at=self.now,
            submitted_by=None,
            feedback_counts={},
            feedback_status="none",
        )
        if tombstone is not None:
            # Its origin withdrew it before it reached us: it arrives retracted, and the
            # retraction is what we hand on (build_page), within the signal's audience.
            reason = tombstone.get("reason")
            values.update(
                status="retracted",
                retracted_at=_time(tombstone.get("time"), "time"),
                retract_reason=reason if isinstance(reason, str) else None,
                retraction=tombstone,
            )
        self.new_signals[(origin, uid)] = values
        return True

    def _retraction(self, env: RecordEnvelope, key: store.RecordKey) -> None:
        record = env.record
        origin, _, uid, _ = key
        at = validate.check_retraction(record, max_bytes=self.node.settings.max_record_bytes)
        if record["signal"].get("origin") != origin:
            raise _Refused("a retraction may only withdraw its origin's own signal")
        reason = record.get("reason")
        pending = self.new_signals.get((origin, uid))
        held = self.signals.get((origin, uid))
        if pending is None and held is None:
            # We never held it (it was retracted before it reached us). Keep a tombstone, so a
            # relay serving the signal later cannot bring it back: it then arrives retracted.
            # Its audience is unknown here, so the log keeps only a commitment, and the
            # tombstone itself is handed on only once the signal (and so its audience) is known.
            if (origin, uid) not in self.tombstones:
                idx = self._log(record, "amber", key)
                receipts.retraction_applied(self.tx, record, "amber", idx)
                self.tombstones[(origin, uid)] = record
                self.new_tombstones.append(
                    {
                        "origin": origin,
                        "uid": uid,
                        "record": record,
                        "received_from": self.peer,
                        "created_at": self.now,
                    }
                )
            return
        signal_record = pending["record"] if pending is not None else held.record  # type: ignore[union-attr]
        meta = replace(RecordMeta.from_record(signal_record, env.hops), exclude=frozenset())
        may_accept(meta, self.peer, self.trusted, self.node.origin)
        idx = self._log(record, meta.tlp.value, key)
        receipts.retraction_applied(self.tx, record, meta.tlp.value, idx)
        changes = {
            "status": "retracted",
            "retracted_at": at,
            "retract_reason": reason if isinstance(reason, str) else None,
            "retraction": record,
            "updated_at": self.now,
            "change_seq": idx,
        }
        if pending is not None:
            pending.update(changes)
            pending["hops"] = env.hops
        else:
            assert held is not None
            if held.status != "retracted":
                held.created_seq = held.change_seq  # where feed consumers saw it appear
            for name, value in changes.items():
                setattr(held, name, value)
            held.hops = env.hops
            self.tx.session.add(held)

    def _feedback(self, env: RecordEnvelope, key: store.RecordKey) -> None:
        record = env.record
        origin, _, uid, _ = key
        at = validate.check_feedback(record, max_bytes=self.node.settings.max_record_bytes)
        ref = record["signal"]
        signal_key = (str(ref.get("origin")), str(ref.get("id")))
        verdict = record.get("verdict")
        held = self.signals.get(signal_key)
        if held is None:
            raise _Refused("feedback about a signal we do not hold")
        why = feedback_service.ineligible(held, origin, self.node.origin, self.keys)
        if why is not None:
            raise _Refused(f"NotInAudience: {why}")
        reason = record.get("reason")
        tlp = held.tlp
        idx = self._log(record, tlp, key)
        self.new_feedback.append(
            {
                "uid": uid,
                "origin": origin,
                "signal_origin": held.origin,
                "signal_uid": held.uid,
                "verdict": verdict,
                "reason": reason if isinstance(reason, str) else None,
                "created_at": at,
                "received_from": self.peer,
                "submitted_by": None,
                "change_seq": idx,
                "record": record,
            }
        )
        self.recount.append(held)  # counted once the page's verdicts are stored (run())


def _claims_restricted(record: Any) -> bool:
    """Whether a (refused, so untrusted) record says it is red or amber: its refusal then names
    no digest (see `_refuse`)."""
    audience = record.get("audience") if isinstance(record, dict) else None
    return isinstance(audience, dict) and audience.get("tlp") in COMMITTED_TLP


def _record_key(record: dict[str, Any]) -> store.RecordKey | None:
    """(origin, kind, id, version) of a record, or None if unusable."""
    origin = record.get("origin")
    kind = record.get("kind")
    if not is_origin(origin) or kind not in ("signal", "retraction", "feedback"):
        return None
    assert isinstance(origin, str)
    if kind == "signal":
        rid, version = record.get("id"), record.get("version", 1)
    elif kind == "retraction":
        sig = record.get("signal")
        if not isinstance(sig, dict):
            return None
        rid, version = sig.get("id"), 1
    else:
        if not isinstance(record.get("signal"), dict):
            return None
        rid, version = record.get("id"), 1
    if not isinstance(rid, str) or not 0 < len(rid) <= 64:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31:
        return None
    return (origin, str(kind), rid, version)


def apply_page(node: Node, peer: str, after: int, page: RecordsPage) -> ApplyResult:
    """Apply a page pulled from `peer` with `after`, and move the cursor, in one transaction.
    The cyclic garbage collector is paused while the page is applied (`app.gcpause`: the
    full-heap passes that the page's allocations trigger cost a tenth of the apply), from
    when the sequencer lock is held until the page's changes are committed (the log rows and
    the commit allocate too, with the whole page still alive): never while waiting for the
    lock or for a group commit (`Tx.pause_gc_until_committed`)."""
    with transaction(node) as tx:
        tx.pause_gc_until_committed()
        return _apply_page(tx, peer, after, page)


def _apply_page(tx: Any, peer: str, after: int, page: RecordsPage) -> ApplyResult:
    row = store.get_peer(tx.session, peer)
    if row is None:
        return ApplyResult(stale=True)
    if row.cursor != after:
        return ApplyResult(stale=True)
    # Pinned peers and, with a roster, every active member (app/services/roster.py).
    keys = roster_svc.trusted_keys(tx.session)
    applier = _Applier(tx, peer, keys)
    applier.run(page.records)
    result = applier.result
    if result.refused:
        tx.append("refused", {"from": peer, "count": result.refused, "reasons": result.reasons})
        log.warning(
            "refused %d record(s) from %s: %s",
            result.refused,
            peer,
            "; ".join(result.reasons[:3]),
        )
    row.cursor = page.next
    row.last_attempt = applier.now  # the pull loop stamps it only once a round
    row.remote_size = max(row.remote_size, _checkpoint_size(page.checkpoint), page.next)
    row.records_received += result.applied
    row.records_refused += result.refused
    tx.session.add(row)
    return result


def _checkpoint_size(note: str) -> int:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0
