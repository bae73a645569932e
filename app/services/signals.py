"""Publishing, reading and retracting signals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select

from app.errors import Forbidden, InvalidInput, InvalidSignal, NotFound
from app.ids import new_id
from app.schemas import (
    Audience,
    BatchResult,
    ItemError,
    ItemResult,
    SignalIn,
    SignalOut,
    SignalPage,
)
from app.services import receipts, records
from app.services.narrowing import Narrowing
from app.services.node import Node
from app.services.tx import transaction
from app.signals.match_index import match_key
from app.signals.types import canonicalize
from app.signals.vocab import (
    DEFAULT_VALIDITY,
    TLP,
    SignalType,
    validate_categories,
    validate_indicators,
)
from app.storage import repos
from app.storage.bulk import insert_many
from app.storage.models import SignalRow
from app.storage.types import utcnow

MAX_VALIDITY = timedelta(days=5 * 365)
_ORIGIN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


@dataclass
class PreparedSignal:
    index: int
    type: str
    value: str
    match_key: str
    attrs: dict[str, Any]
    spec: SignalIn
    valid_until: datetime


def pydantic_item_error(exc: ValidationError, prefix: str) -> ItemError:
    """The first error of a ValidationError, as a field path and a reason."""
    err = exc.errors()[0]
    path = prefix
    for part in err["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    reason = err["msg"]
    if err["type"] == "extra_forbidden":
        reason = "unknown field"
    elif err["type"] == "missing":
        reason = "required"
    return ItemError(field=path, reason=reason)


def prepare(node: Node, index: int, raw: Any, now: datetime | None = None) -> PreparedSignal:
    """Validate one submitted item into canonical form; raises InvalidSignal or ValidationError.
    `now`: the time the batch is checked at (one per batch: see `Tx.now`)."""
    if not isinstance(raw, dict):
        raise InvalidSignal("", "each signal must be a JSON object")
    spec = SignalIn.model_validate(raw)
    known_ids = set(node.settings.identifier_keys)
    if known_ids:  # OPRF epoch ids are identifier key ids too (docs/identifiers.md)
        from app.services.oprf import epoch_ids

        known_ids |= epoch_ids(node.settings)
    if spec.key_id is not None and known_ids and spec.key_id not in known_ids:
        known = ", ".join(sorted(known_ids))
        raise InvalidSignal("key_id", f"unknown identifier key id; this node uses: {known}")
    canon = canonicalize(
        spec.type,
        spec.value,
        quality=spec.quality,
        allow_low_quality=spec.allow_low_quality,
        key_id=spec.key_id,
        domain=spec.domain,
        subdomains=spec.subdomains if spec.type == "domain" else None,
    )
    categories = validate_categories(spec.categories, node.settings.extra_categories)
    indicators = validate_indicators(spec.indicators)
    _check_audience(node, spec)
    if now is None:
        now = utcnow()
    if spec.valid_until is None:
        default = DEFAULT_VALIDITY[SignalType(canon.type)]
        valid_until = now + node.settings.validity(canon.type, default)
    else:
        if spec.valid_until.tzinfo is None:
            raise InvalidSignal("valid_until", "must include a timezone, e.g. 2027-01-31T00:00:00Z")
        valid_until = spec.valid_until
        if valid_until <= now:
            raise InvalidSignal("valid_until", "must be in the future")
        if valid_until > now + MAX_VALIDITY:
            raise InvalidSignal("valid_until", "must be within 5 years")
    spec.categories, spec.indicators = categories, indicators
    attrs = dict(canon.extra)
    return PreparedSignal(
        index=index,
        type=canon.type,
        value=canon.value,
        match_key=match_key(canon.type, canon.value, key_id_of(attrs)),
        attrs=attrs,
        spec=spec,
        valid_until=valid_until,
    )


def key_id_of(attrs: dict[str, Any]) -> str | None:
    key_id = attrs.get("key_id")
    return key_id if isinstance(key_id, str) else None


def _check_audience(node: Node, spec: SignalIn) -> None:
    a = spec.audience
    for i, peer in enumerate(a.peers):
        if not peer or set(peer) - _ORIGIN_CHARS:
            raise InvalidSignal(f"audience.peers[{i}]", "must be a peer origin such as ngo.example")
        if peer == node.origin:
            raise InvalidSignal(f"audience.peers[{i}]", "names this node itself")
    if a.tlp == "red" and a.peers:
        raise InvalidSignal("audience.peers", "a red signal never leaves this node; name no peers")
    if a.tlp == "amber" and not a.peers:
        raise InvalidSignal("audience.peers", "an amber signal goes only to the peers named here")
    if a.tlp in ("green", "clear") and a.peers:
        raise InvalidSignal(
            "audience.peers", f"{a.tlp} goes to every member; use amber to name peers"
        )


def submit_batch(node: Node, items: list[Any], submitted_by: int | None) -> BatchResult:
    """Publish a batch; each item is answered on its own and a bad item loses no other."""
    if len(items) > node.settings.max_batch:
        raise InvalidInput("signals", f"at most {node.settings.max_batch} signals per request")
    results: list[ItemResult | None] = [None] * len(items)
    prepared: list[PreparedSignal] = []
    now = utcnow()
    for i, raw in enumerate(items):
        try:
            prepared.append(prepare(node, i, raw, now))
        except ValidationError as exc:
            err = pydantic_item_error(exc, f"signals[{i}]")
            results[i] = ItemResult(index=i, status="rejected", error=err)
        except InvalidInput as exc:
            field = f"signals[{i}]" + (f".{exc.field}" if exc.field else "")
            err = ItemError(field=field, reason=exc.reason)
            results[i] = ItemResult(index=i, status="rejected", error=err)
    if prepared:
        with transaction(node) as tx:
            for done in publish_many(tx, prepared, submitted_by):
                if done.error is not None:
                    field = f"signals[{done.index}]" + (
                        f".{done.error.field}" if done.error.field else ""
                    )
                    err = ItemError(field=field, reason=done.error.reason)
                    results[done.index] = ItemResult(index=done.index, status="rejected", error=err)
                else:
                    results[done.index] = ItemResult(
                        index=done.index, status=done.status, id=done.id
                    )
    final = [r for r in results if r is not None]
    return BatchResult(
        created=sum(r.status == "created" for r in final),
        duplicate=sum(r.status == "duplicate" for r in final),
        rejected=sum(r.status == "rejected" for r in final),
        items=final,
    )


_SIGNAL = SignalRow.__table__  # type: ignore[attr-defined]
# How many match keys one duplicate lookup names: well under every engine's bind-parameter limit.
_LOOKUP_CHUNK = 500


def active_uids_query(keys: list[str]) -> Any:
    """The duplicate check's query: the active signals (any origin) having one of `keys`.

    The origin is compared by the caller, not in SQL: given `origin = ?` too, SQLite chose the
    (origin, uid) index and scanned every signal of ours for each chunk (an import slowed to a
    crawl as it grew). `match_key IN (...) AND status = ?` keeps it on
    ix_signal_match_key_status; peers' rows for the same values are few. PostgreSQL picks that
    index only with statistics (`importer._Statistics`)."""
    c = _SIGNAL.c
    return select(c.match_key, c.uid, c.origin).where(c.match_key.in_(keys), c.status == "active")


def active_uids(session: Any, origin: str, keys: list[str]) -> dict[str, str]:
    """match_key -> uid of `origin`'s active signal, for those of `keys` that have one.
    One indexed query per 500 keys, instead of one per item (the per-item query, with the
    ORM's autoflush before each, was half the cost of a batch: docs/scaling.md)."""
    found: dict[str, str] = {}
    conn = session.connection()
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        for key, uid, row_origin in conn.execute(active_uids_query(chunk)):
            if row_origin == origin:
                found.setdefault(key, uid)
    return found


@dataclass(frozen=True, slots=True)
class Published:
    """What became of one prepared signal: `created` (with its new id), `duplicate` (with the
    id of the active signal it repeats) or `rejected` (its signed record failed the size check
    a peer applies: `error`)."""

    index: int
    status: Literal["created", "duplicate", "rejected"]
    id: str | None = None
    error: InvalidInput | None = None


def publish_many(
    tx: Any, prepared: list[PreparedSignal], submitted_by: int | None
) -> list[Published]:
    """Sign, log and store prepared signals in the caller's write transaction; a value this
    node already has active (or that came earlier in `prepared`) is a duplicate of it. An item
    whose signed record is too large is rejected on its own (nothing of it is logged or
    stored); the others still land.

    The rows go in with one many-row insert on the raw driver (`storage.bulk.insert_many`):
    building an ORM object per row and flushing it cost more than signing it, and SQLAlchemy's
    per-row parameter handling was still a fifth of a batch. The log entries are appended in
    item order under the sequencer lock the transaction holds, so `change_seq` stays gap-free
    and commit-ordered.
    Returns one `Published` per item, in order."""
    node: Node = tx.node
    narrowing = Narrowing.load(tx.session)
    seen = active_uids(tx.session, node.origin, list({p.match_key for p in prepared}))
    out: list[Published] = []
    rows: list[dict[str, Any]] = []
    for p in prepared:
        existing_uid = seen.get(p.match_key)
        if existing_uid is not None:
            out.append(Published(p.index, "duplicate", existing_uid))
            continue
        try:
            row = _publish(tx, p, submitted_by, narrowing)
        except InvalidInput as exc:  # raised before its log entry: nothing to undo
            out.append(Published(p.index, "rejected", error=exc))
            continue
        seen[p.match_key] = row["uid"]
        rows.append(row)
        out.append(Published(p.index, "created", row["uid"]))
    if rows:
        insert_many(tx.session.connection(), _SIGNAL, rows)
    return out


def _publish(
    tx: Any, p: PreparedSignal, submitted_by: int | None, narrowing: Narrowing
) -> dict[str, Any]:
    """One signal's signed record and log entry; returns its row for the bulk insert."""
    node: Node = tx.node
    published = tx.now  # valid_from: the batch's time, in whole seconds
    now = utcnow()  # the row's own times: TAXII and the publication search order by them
    spec = p.spec
    uid = new_id()
    body = records.signal_body(
        uid=uid,
        version=1,
        type_=p.type,
        value=p.value,
        attrs=p.attrs,
        categories=spec.categories,
        indicators=spec.indicators,
        opinion=spec.opinion.value,
        confidence=spec.confidence,
        reviewed=spec.reviewed,
        valid_from=published,
        valid_until=p.valid_until,
        tlp=spec.audience.tlp.value,
        peers=sorted(spec.audience.peers),
        hops=spec.audience.hops,
    )
    # Peers we removed or narrowed must not get it through a relay either.
    exclude = narrowing.excluded(body, node.origin)
    if exclude:
        body["audience"]["exclude"] = exclude
    record, record_bytes = records.sign_prepared_signal(node, body, owned=True)
    seq = tx.append_record("signal", record, spec.audience.tlp.value, record_bytes=record_bytes)
    # Every column, as SignalRow's defaults would fill them: a Core insert applies no
    # model-level defaults.
    return {
        **records.signal_columns(body),
        "origin": node.origin,
        "match_key": p.match_key,
        "status": "active",
        "retracted_at": None,
        "retract_reason": None,
        "retraction": None,
        "created_at": now,
        "updated_at": now,
        "change_seq": seq,
        "created_seq": None,
        "received_from": None,
        "hops": 0,
        "submitted_by": submitted_by,
        "feedback_counts": {},
        "feedback_status": "none",
        "record": record,
    }


def get(node: Node, uid: str, origin: str | None = None) -> SignalOut:
    with node.db.read() as session:
        row = repos.get_signal(session, uid, origin)
        if row is None:
            raise NotFound(f"no signal with id {uid!r}")
        return to_out(row)


def list_page(
    node: Node,
    *,
    type_: str | None,
    category: str | None,
    status: str | None,
    origin: str | None,
    after: str | None,
    limit: int,
) -> SignalPage:
    after_id = decode_cursor(after)
    with node.db.read() as session:
        rows = repos.list_signals(
            session,
            type_=type_,
            category=category,
            status=status,
            origin=origin,
            after_id=after_id,
            limit=limit,
            now=utcnow(),
        )
    nxt = encode_cursor(rows[-1].id) if len(rows) == limit and rows[-1].id else None
    return SignalPage(items=[to_out(r) for r in rows], next=nxt)


def encode_cursor(row_id: int) -> str:
    return f"s{row_id}"


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.startswith("s") or not cursor[1:].isdigit() or len(cursor) > 20:
        raise InvalidInput("after", "not a cursor this node issued (use `next` from a page)")
    return int(cursor[1:])


def retract(node: Node, uid: str, reason: str) -> SignalOut:
    """Withdraw one of our own signals: it stops matching at once, here and at every peer."""
    with transaction(node) as tx:
        row = repos.get_signal(tx.session, uid, node.origin)
        if row is None:
            other = repos.get_signal(tx.session, uid)
            if other is not None:
                raise Forbidden(f"signal {uid} belongs to {other.origin}; only its origin retracts")
            raise NotFound(f"no signal with id {uid!r}")
        if row.status == "retracted":
            return to_out(row)
        now = utcnow()
        body = records.retraction_body(
            signal_origin=row.origin, signal_uid=row.uid, version=row.version, reason=reason, at=now
        )
        record = records.sign(node, body)
        row.created_seq = row.change_seq  # where feed consumers saw it appear
        row.change_seq = tx.append_record("retraction", record, row.tlp)
        row.status = "retracted"
        row.retracted_at = now
        row.retract_reason = reason
        row.retraction = record
        row.updated_at = now
        tx.session.add(row)
        return to_out(row)


def effective_status(
    row: SignalRow, now: datetime | None = None
) -> Literal["active", "retracted", "expired"]:
    if row.status == "retracted":
        return "retracted"
    if row.status == "expired" or row.valid_until <= (now or utcnow()):
        return "expired"
    return "active"


def to_out(row: SignalRow) -> SignalOut:
    return SignalOut(
        id=row.uid,
        origin=row.origin,
        version=row.version,
        type=row.type,
        value=row.value,
        attrs=row.attrs,
        categories=row.categories,
        indicators=row.indicators,
        opinion=row.opinion,
        confidence=row.confidence,
        reviewed=row.reviewed,
        audience=Audience(tlp=TLP(row.tlp), peers=row.audience_peers, hops=row.audience_hops),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        status=effective_status(row),
        retracted_at=row.retracted_at,
        retract_reason=row.retract_reason,
        received_from=row.received_from,
        feedback=row.feedback_counts,
        feedback_status=row.feedback_status,
        record=row.record,
    )


EXPIRE_BATCH = 1000


def expire_due(node: Node) -> int:
    """Mark signals past `valid_until` as expired (matching already ignores them).

    A signal received from a peer gets an `applied` expiry receipt in our log, in the same
    transaction (app/services/receipts.py): the evidence an auditor reconciles. Batched, so a
    mass expiry never holds the sequencer for long."""
    total = 0
    while True:
        with transaction(node) as tx:
            rows = repos.expire_due(tx.session, utcnow(), limit=EXPIRE_BATCH)
            now = utcnow()
            for row in rows:
                row.status = "expired"
                row.updated_at = now
                tx.session.add(row)
                if row.received_from is not None:
                    receipts.expiry_applied(tx, row)
        total += len(rows)
        if len(rows) < EXPIRE_BATCH:
            return total


def purge(node: Node) -> int:
    """Delete retracted and expired signals older than the retention period."""
    cutoff = utcnow() - timedelta(days=node.settings.retention_days)
    with node.db.write() as session:
        return repos.purge_before(session, cutoff)
