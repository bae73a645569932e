"""Feeds for tools the field already runs: a StopNCII-style FetchHashes, a signed changes feed
(for the python-threatexchange extension `signet_tx`) and STIX 2.1 indicators for TAXII 2.1.

Who sees what is decided once, here (`visible_tlps`): a feed key sees `clear` records, and
`green` ones only if the operator marked the key as a federation member. `amber` (named peers
only) and `red` (never leaves the node) are never served to an API-key consumer, whatever its
scopes: the storage queries filter on the allowed levels, and `_check_visible` re-checks every
row before it is rendered, so a query bug cannot widen an audience.

All three feeds walk signals in log order (`change_seq`, gap-free and commit-ordered), so a page
boundary is stable under concurrent inserts: a row committed later always lands after the cursor.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.errors import Conflict, InvalidInput
from app.services.apikeys import Caller
from app.services.node import Node
from app.services.timefmt import parse_rfc3339, rfc3339
from app.signals.vocab import Category
from app.storage import feeds as q
from app.storage.models import SignalRow, StopNCIIPageRow
from app.storage.types import utcnow

MAX_PAGE = 1000
# Upper bound on rows a single request examines while skipping ones a feed does not carry, so one
# request's cost stays bounded; the cursor then points past the rows skipped.
_SCAN_FACTOR = 10
# Upper bound on the log positions one request's query walks. The audience and type conditions
# have no index, so the database reads every signal changed in the range to test them: a key that
# may read none of a node's signals made each request read them all (10 s a page at 5M
# signals). A request now looks at most this far past its cursor and, if it found nothing
# there, answers an empty page whose cursor is the end of that stretch, with `more` set.
_SCAN_WINDOW = 50_000


class FeedLeak(AssertionError):
    """A row outside the caller's audience reached a feed renderer (a bug, never user input)."""


def visible_tlps(key: Caller) -> tuple[str, ...]:
    """TLP levels an API-key consumer may read through any feed."""
    return ("clear", "green") if key.member else ("clear",)


def _check_visible(row: SignalRow, tlps: Sequence[str]) -> None:
    if row.tlp not in tlps or row.tlp in ("red", "amber"):
        raise FeedLeak(f"signal {row.uid} ({row.tlp}) outside the feed audience")


def _feed_may_serve(row: SignalRow) -> bool:
    """A feed consumer is one more hop (issue 9): a record received from a peer is served only
    while its signed hop limit allows one more relay, as `audience.may_send` would allow it to
    another peer. Our own records (hops 0) always may."""
    return row.received_from is None or row.hops <= row.audience_hops


def _scan(
    node: Node,
    tlps: Sequence[str],
    after: int,
    want: int,
    keep: Any,
    *,
    types: Sequence[str] | None = None,
    category: str | None = None,
) -> tuple[list[tuple[SignalRow, datetime]], int, datetime | None, bool]:
    """Walk signals after `after` in change order, keeping those `keep(row)` accepts.

    Returns (kept rows, at most `want`; the last log position examined: the cursor to go on
    from; the time of the last row examined, if any; whether there may be more). Examines at
    most `want * _SCAN_FACTOR` rows, within `_SCAN_WINDOW` log positions of `after`.
    """
    kept: list[tuple[SignalRow, datetime]] = []
    cursor, cursor_at = after, None
    budget = max(want, 1) * _SCAN_FACTOR
    with node.db.read() as session:
        # Positions below the committed size are all committed (commit-ordered), so every
        # change in the window is visible now and nothing later can land in it.
        size = q.log_size(session)
        end = min(size, max(after, -1) + 1 + _SCAN_WINDOW)  # examine (after, end)

        def batch_after(seq: int, limit: int) -> list[tuple[SignalRow, datetime]]:
            return q.signals_by_change(
                session,
                tlps=tlps,
                after_seq=seq,
                before_seq=end,
                limit=limit,
                types=types,
                category=category,
            )

        while budget > 0:
            batch = batch_after(cursor, min(budget, want + 1))
            if not batch:  # the window is done: go on from its end next time
                return kept, max(cursor, end - 1), cursor_at, end < size
            for row, at in batch:
                if len(kept) == want:
                    return kept, cursor, cursor_at, True
                _check_visible(row, tlps)
                cursor, cursor_at = row.change_seq, at
                budget -= 1
                if keep(row) and _feed_may_serve(row):
                    kept.append((row, at))
        more = end < size or bool(batch_after(cursor, 1))
    return kept, cursor, cursor_at, more


def _is_count(text: str) -> bool:
    """ASCII digits within a signed 64-bit column (str.isdigit also accepts e.g. '²')."""
    return text.isascii() and text.isdigit() and int(text) < 2**62


def _epoch(ts: int) -> datetime:
    try:
        return datetime.fromtimestamp(max(ts, 0), UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput("startTimestamp", "Unix seconds before the year 10000") from None


# --- StopNCII-style FetchHashes ----------------------------------------------------------------

# Signet type -> StopNCII signalType. The client knows four; `url` is shared by Signet only as a
# SHA-256 (which no StopNCII consumer can match), so URL carries `domain` signals.
STOPNCII_TYPES = {"pdq": "ImagePDQ", "md5": "VideoMD5", "domain": "URL", "keyword": "Text"}
_OPINION_FEEDBACK = {
    "positive": "Blocked",
    "negative": "NotBlocked",
    "investigation_seed": "PendingReview",
}
_VERDICT_FEEDBACK = {
    "true_positive": "Blocked",
    "false_positive": "NotBlocked",
    "appeal_overturned": "NotBlocked",
    "disputed": "QualityUnknown",
    "seen": "None",
}


def _encode_token(seq: int, walk: int) -> str:
    return f"s2.{seq}.{walk}"


def _decode_token(token: str) -> tuple[int, int | None]:
    """(cursor, walk). Tokens of the first format (`s1`, before walks were tracked) carry no
    walk: the rest of such a walk sends no withdrawals, which is always safe."""
    parts = token.split(".")
    if (
        len(token) > 64
        or len(parts) != 3
        or parts[0] not in ("s1", "s2")
        or not all(_is_count(p) for p in parts[1:])
    ):
        raise InvalidInput("nextPageToken", "not a token this node issued")
    return int(parts[1]), (int(parts[2]) if parts[0] == "s2" else None)


# A StopNCII consumer that has not fetched for 30 days starts over (its checkpoint is stale), so
# older page records can never be needed.
_PAGE_RETENTION = timedelta(days=31)


def stopncii_fetch(
    node: Node, key: Caller, start_timestamp: int, page_size: int, token: str | None
) -> dict[str, Any]:
    """One FetchHashes page, in the shape the StopNCII client parses.

    Withdrawals. python-threatexchange 1.2.17 (and so HMA) stores a `Withdrawn` record as an
    *active* hash: its check compares the hash value, not the status, with "Withdrawn". A
    withdrawal can therefore only ever be sent to a consumer that already holds the hash, or it
    would plant a retracted hash in a store that never had it. The node knows exactly what a key
    was sent: each page is recorded (`StopNCIIPageRow`) with the log range it covered and when,
    under a `walk` that starts with the consumer's fresh fetch and continues through every
    resume. A retracted signal is sent as `Withdrawn` only when a page of the same walk covered
    the signal's first log index while the retraction was not yet committed (the page records
    the log size it read after its scan, and log indexes are commit-ordered), and the signal was
    still valid when withdrawn: that page delivered it as active. No clock is compared.
    Everything else retracted is left out.

    Resuming. Each page's `nextSetTimestamp` is unique per key (the current second, or one more
    than the key's last), so a consumer resuming from it resumes exactly at that page's end. A
    `startTimestamp` the node did not issue to this key (a first fetch, or one older than the
    retention) starts a new walk at the first change in that second.
    """
    tlps = visible_tlps(key)
    page_size = min(max(page_size, 1), MAX_PAGE)
    now = utcnow()
    walk: int | None
    if token:
        after, walk = _decode_token(token)
    else:
        with node.db.read() as session:
            page = q.stopncii_page(session, key.id, start_timestamp)
            if page is not None:
                after, walk = page.end_seq, page.walk
            else:
                after = q.log_index_at(session, _epoch(start_timestamp)) - 1
                walk = None
    if walk is None:
        walk = secrets.randbelow(2**62)

    def keep(row: SignalRow) -> bool:
        # Retracted rows are decided after the scan, against the page records.
        return row.status == "retracted" or row.valid_until > now

    rows, cursor, _, more = _scan(node, tlps, after, page_size, keep, types=list(STOPNCII_TYPES))
    with node.db.read() as session:
        # Read after the scan: a change at or past this index was not visible to the scan.
        seen_size = q.log_size(session)
        rows = [
            (row, at)
            for row, at in rows
            if row.status != "retracted" or _was_delivered(session, key.id, walk, row, at)
        ]
    set_ts = _record_page(node, key.id, walk, after, cursor, seen_size)
    return {
        "count": len(rows),
        "nextPageToken": _encode_token(cursor, walk) if more else None,
        "nextSetTimestamp": set_ts,
        "hasMoreRecords": more,
        "hashRecords": [_stopncii_record(row, at) for row, at in rows],
    }


def _was_delivered(
    session: Session, key_id: int, walk: int, row: SignalRow, retracted_at: datetime
) -> bool:
    """Whether this walk was sent `row` as active before it was retracted (see above)."""
    if row.created_seq is None or row.valid_until <= retracted_at:
        return False
    return q.stopncii_delivered(session, key_id, walk, row.created_seq, row.change_seq)


def _record_page(
    node: Node, key_id: int, walk: int, start_seq: int, end_seq: int, log_size: int
) -> int:
    """Store the page and return its `nextSetTimestamp`, unique for this key."""
    issued_at = utcnow()
    for _ in range(8):
        try:
            with node.db.write_unlogged() as session:
                last = q.last_stopncii_set_ts(session, key_id)
                set_ts = int(issued_at.timestamp())
                if last is not None and last >= set_ts:
                    set_ts = last + 1
                session.add(
                    StopNCIIPageRow(
                        key_id=key_id,
                        set_ts=set_ts,
                        walk=walk,
                        start_seq=start_seq,
                        end_seq=end_seq,
                        log_size=log_size,
                        issued_at=issued_at,
                    )
                )
                if last is None or set_ts % 64 == 0:
                    q.prune_stopncii_pages(session, key_id, issued_at - _PAGE_RETENTION)
            return set_ts
        except IntegrityError:  # a concurrent page of the same key took this second
            continue
    raise Conflict("too many concurrent FetchHashes requests for one key; retry")


def _stopncii_record(row: SignalRow, at: datetime) -> dict[str, Any]:
    withdrawn = row.status == "retracted"
    status = "Withdrawn" if withdrawn else "Active"
    feedbacks: list[dict[str, Any]] = [
        {
            # A stored row is read defensively: a value outside today's vocabulary (a record
            # stored by an older release) is shown as unknown, never a 500 for every consumer.
            "feedbackValue": "Withdrawn"
            if withdrawn
            else _OPINION_FEEDBACK.get(row.opinion, "QualityUnknown"),
            "tags": sorted({t for t in (*row.categories, *row.indicators) if isinstance(t, str)}),
            "source": row.origin,
        }
    ]
    for verdict, count in sorted(row.feedback_counts.items()):
        value = _VERDICT_FEEDBACK.get(verdict)
        if value is not None and isinstance(count, int) and count > 0:
            feedbacks.append(
                {"feedbackValue": value, "tags": [verdict, f"count:{count}"], "source": "signet"}
            )
    return {
        "lastModtimestamp": int(at.timestamp()),
        "signalType": STOPNCII_TYPES[row.type],
        "hashValue": row.value,
        "hashStatus": status,
        "caseNumbers": {f"{row.origin}/{row.uid}": status},
        "CSPFeedbacks": feedbacks,
    }


# --- signed changes feed (signet_tx) -----------------------------------------------------------


def changes(node: Node, key: Caller, after: int, limit: int) -> dict[str, Any]:
    """Signed records in log order: a signal's record while it stands, its origin's signed
    retraction once withdrawn. `next` is the log position to ask for next."""
    tlps = visible_tlps(key)
    limit = min(max(limit, 1), MAX_PAGE)
    now = utcnow()
    rows, cursor, _, more = _scan(node, tlps, max(after, 0), limit, lambda _row: True)
    items = []
    for row, at in rows:
        retracted = row.status == "retracted" and row.retraction is not None
        items.append(
            {
                "seq": row.change_seq,
                "time": rfc3339(at),
                "record": row.retraction if retracted else row.record,
                "feedback": row.feedback_counts,
            }
        )
    return {"records": items, "next": cursor, "more": more, "now": rfc3339(now)}


def _encode_expiry(at: datetime, row_id: int) -> str:
    return f"e1.{int(at.timestamp() * 1_000_000)}.{row_id}"


def _decode_expiry(token: str) -> tuple[datetime, int]:
    parts = token.split(".")
    if (
        len(token) > 64
        or len(parts) != 3
        or parts[0] != "e1"
        or not all(_is_count(p) for p in parts[1:])
    ):
        raise InvalidInput("after", "not a cursor this node issued")
    try:
        at = datetime.fromtimestamp(int(parts[1]) / 1_000_000, UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput("after", "not a cursor this node issued") from None
    return at, int(parts[2])


def expired(
    node: Node, key: Caller, since: str, until: str | None, after: str | None, limit: int
) -> dict[str, Any]:
    """Signals whose validity ended in (since, until]: what a follower must delete for expiry,
    which (unlike a retraction) is not a change in the log."""
    tlps = visible_tlps(key)
    limit = min(max(limit, 1), MAX_PAGE)
    now = utcnow()
    try:
        since_dt = parse_rfc3339(since)
        until_dt = min(parse_rfc3339(until), now) if until else now
    except ValueError:
        raise InvalidInput("since/until", "RFC 3339 times with a timezone") from None
    resume = _decode_expiry(after) if after else None
    with node.db.read() as session:
        rows = q.expired_between(
            session, tlps=tlps, since=since_dt, until=until_dt, after=resume, limit=limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        _check_visible(row, tlps)
    following = _encode_expiry(rows[-1].valid_until, rows[-1].id or 0) if more else None
    rows = [r for r in rows if _feed_may_serve(r)]
    return {
        "items": [
            {"origin": r.origin, "id": r.uid, "valid_until": rfc3339(r.valid_until)} for r in rows
        ],
        "until": rfc3339(until_dt),
        "next": following,
    }


# --- STIX 2.1 / TAXII 2.1 ----------------------------------------------------------------------

# Deterministic STIX ids: uuid5 under this namespace of "<origin>/<signal id>", so every
# version of a signal (and every node relaying it) names the same indicator.
STIX_NAMESPACE = uuid.UUID("5b9c2a7e-3f41-5d0c-9a8e-6c1f0b2d4e17")
# TLP 2.0 marking definitions as published by OASIS (cti-stix-common-objects, tlp-2.0).
TLP_MARKINGS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
_INDICATOR_TYPES = {
    "positive": "malicious-activity",
    "investigation_seed": "anomalous-activity",
    "negative": "benign",
}
ALL_COLLECTION = "all"


def collection_names(node: Node) -> list[str]:
    return [ALL_COLLECTION, *(c.value for c in Category), *sorted(node.settings.extra_categories)]


def collection_id(node: Node, name: str) -> str:
    return str(uuid.uuid5(STIX_NAMESPACE, f"{node.origin}/collection/{name}"))


def collections(node: Node) -> list[dict[str, Any]]:
    out = []
    for name in collection_names(node):
        what = "every signal" if name == ALL_COLLECTION else f"signals in category {name!r}"
        out.append(
            {
                "id": collection_id(node, name),
                "title": f"{node.origin} {name}",
                "description": f"STIX 2.1 indicators for {what} this key may read",
                "alias": name,
                "can_read": True,
                "can_write": False,
                "media_types": ["application/stix+json;version=2.1"],
            }
        )
    return out


def collection_by_id(node: Node, cid: str) -> str | None:
    for name in collection_names(node):
        if collection_id(node, name) == cid:
            return name
    return None


def _stix_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def taxii_time(dt: datetime) -> str:
    """date_added with microseconds, so `added_after` = a served date_added never skips a row."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix_pattern(type_: str, value: str) -> str:
    v = _literal(value)
    match type_:
        case "sha256":
            return f"[file:hashes.'SHA-256' = {v}]"
        case "md5":
            return f"[file:hashes.MD5 = {v}]"
        case "pdq":
            return f"[file:hashes.PDQ = {v}]"
        case "photodna":
            return f"[file:hashes.PHOTODNA = {v}]"
        case "domain":
            return f"[domain-name:value = {v}]"
        case "url":
            # Signet shares a URL only as the SHA-256 of its canonical form.
            return f"[url:x_signet_sha256 = {v}]"
        case _:
            # Keyed identifiers, keywords and TLSH digests have no STIX observable of their own.
            return f"[x-signet-{type_.replace('_', '-')}:value = {v}]"


def stix_id(origin: str, uid: str) -> str:
    return "indicator--" + str(uuid.uuid5(STIX_NAMESPACE, f"{origin}/{uid}"))


def to_indicator(row: SignalRow) -> dict[str, Any]:
    created = row.valid_from
    modified = row.retracted_at if row.status == "retracted" and row.retracted_at else created
    valid_until = row.valid_until
    if valid_until <= created:  # STIX requires valid_until > valid_from
        valid_until = created + timedelta(milliseconds=1)
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id(row.origin, row.uid),
        "created": _stix_time(created),
        "modified": _stix_time(max(modified, created)),
        "name": f"{row.type} signal {row.uid} from {row.origin}",
        "indicator_types": [_INDICATOR_TYPES.get(row.opinion, "unknown")],
        "pattern": stix_pattern(row.type, row.value),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": _stix_time(created),
        "valid_until": _stix_time(valid_until),
        "confidence": row.confidence,
        "revoked": row.status == "retracted",
        "object_marking_refs": [TLP_MARKINGS[row.tlp]],
        "external_references": [
            {"source_name": "signet", "external_id": f"{row.origin}/{row.uid}"}
        ],
        "x_signet_origin": row.origin,
        "x_signet_type": row.type,
        "x_signet_opinion": row.opinion,
        "x_signet_feedback": row.feedback_counts,
        # The origin's signed record, so a consumer can verify it without trusting this node.
        "x_signet_record": row.record,
    }
    labels = sorted({*row.categories, *row.indicators})
    if labels:
        obj["labels"] = labels
    key_id = row.attrs.get("key_id")
    if isinstance(key_id, str):
        obj["x_signet_key_id"] = key_id
    return obj


def taxii_objects(
    node: Node,
    key: Caller,
    collection: str,
    *,
    added_after: str | None,
    next_token: str | None,
    limit: int,
    types: list[str] | None,
) -> tuple[dict[str, Any], str | None, str | None]:
    """A TAXII 2.1 envelope of indicators, plus the first and last `date_added` on the page."""
    tlps = visible_tlps(key)
    limit = min(max(limit, 1), MAX_PAGE)
    if types is not None and "indicator" not in types:
        return {"more": False, "objects": []}, None, None
    if next_token:
        if not _is_count(next_token):
            raise InvalidInput("next", "not a `next` value this server issued")
        after = int(next_token)
    elif added_after:
        try:
            since = parse_rfc3339(added_after)
        except ValueError:
            raise InvalidInput("added_after", "an RFC 3339 timestamp") from None
        # added_after is exclusive; date_added has microsecond precision.
        since = min(since, datetime.max.replace(tzinfo=UTC) - timedelta(microseconds=1))
        with node.db.read() as session:
            after = q.log_index_at(session, since + timedelta(microseconds=1)) - 1
    else:
        after = -1
    category = None if collection == ALL_COLLECTION else collection
    rows, cursor, _, more = _scan(node, tlps, after, limit, lambda _r: True, category=category)
    envelope: dict[str, Any] = {"more": more, "objects": [to_indicator(r) for r, _ in rows]}
    if more:
        envelope["next"] = str(cursor)
    first = taxii_time(rows[0][1]) if rows else None
    last = taxii_time(rows[-1][1]) if rows else None
    return envelope, first, last
