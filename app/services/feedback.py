"""Feedback: anyone's verdict on a signal, counted per signal into an aggregate status.

Counting (issue 9: one hostile peer must not outvote the federation). A signal's counts are
recomputed from the stored verdicts, never incremented:
- one vote per giver ORIGIN (a node speaks once, whatever number of verdicts it signs; the
  verdicts of this node's own users are this node's one vote);
- that origin's LATEST verdict wins (by the signed `time`, then id), so a replayed old verdict
  cannot override a newer one;
- `seen` is not a judgement: it never replaces an origin's latest judgement and is counted as
  the number of reporters (each remote origin once, each of our API keys once: issue 10);
- only from origins that could have received the signal (`ineligible`): never for a red signal,
  only named peers for amber (or a narrowed list), only our direct peers for our own hop-0
  signal. Received verdicts that fail this are refused (services/sync.py).

Aggregate status, from the verdict counts (`seen` only says the signal was useful to look at):
- `none`      no verdict other than `seen`;
- `confirmed` true positives outnumber false positives, disputes and overturned appeals;
- `disputed`  false positives + disputes + overturned appeals are at least the true positives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from sqlalchemy import select
from sqlmodel import Session

from app.errors import NotFound
from app.ids import new_id
from app.schemas import FeedbackIn, FeedbackOut
from app.services import records
from app.services.node import Node
from app.services.tx import Tx, transaction
from app.storage import limits, repos
from app.storage.models import FeedbackRow, SignalRow
from app.storage.types import utcnow

NEGATIVE = ("false_positive", "disputed", "appeal_overturned")


def aggregate_status(counts: dict[str, int]) -> str:
    positive = counts.get("true_positive", 0)
    negative = sum(counts.get(v, 0) for v in NEGATIVE)
    if positive == 0 and negative == 0:
        return "none"
    return "confirmed" if positive > negative else "disputed"


def give(node: Node, spec: FeedbackIn, submitted_by: int | None) -> FeedbackOut:
    with transaction(node) as tx:
        signal = repos.get_signal(tx.session, spec.signal, spec.origin)
        if signal is None:
            raise NotFound(f"no signal with id {spec.signal!r}")
        row = record_feedback(tx, signal, spec.verdict.value, spec.reason, submitted_by)
        return FeedbackOut(
            id=row.uid,
            signal=signal.uid,
            signal_origin=signal.origin,
            verdict=row.verdict,
            reason=row.reason,
            created_at=row.created_at,
            feedback=signal.feedback_counts,
            feedback_status=signal.feedback_status,
        )


def record_feedback(
    tx: Tx, signal: SignalRow, verdict: str, reason: str | None, submitted_by: int | None
) -> FeedbackRow:
    """Sign, log and count one verdict of ours on `signal`."""
    now = utcnow()
    uid = new_id()
    body = records.feedback_body(
        uid=uid,
        signal_origin=signal.origin,
        signal_uid=signal.uid,
        verdict=verdict,
        reason=reason,
        at=now,
    )
    record = records.sign(tx.node, body)
    seq = tx.append_record("feedback", record, signal.tlp)
    row = FeedbackRow(
        uid=uid,
        origin=tx.node.origin,
        signal_origin=signal.origin,
        signal_uid=signal.uid,
        verdict=verdict,
        reason=reason,
        created_at=now,
        submitted_by=submitted_by,
        change_seq=seq,
        record=record,
    )
    tx.session.add(row)
    tx.session.flush()
    recount(tx.session, signal)
    tx.session.add(signal)
    return row


def ineligible(
    signal: SignalRow, giver: str, our_origin: str, our_peers: Collection[str]
) -> str | None:
    """Why `giver` could not have received `signal` (so its verdict does not count), or None.

    Judged from what this node knows: the signal's signed audience and, for our own signals,
    the peers we could have sent it to. A relay cannot know the origin's peers, so for green
    signals it only applies the audience; the origin applies the rest when the verdict reaches
    it.
    """
    if giver in (our_origin, signal.origin):
        return None
    if signal.tlp == "red":
        return "feedback about a red signal cannot come from a peer"
    if signal.audience_peers and giver not in signal.audience_peers:
        return f"{giver} is not in the signal's audience"
    if signal.tlp == "amber" and not signal.audience_peers:
        return "the amber signal names no peers"
    if signal.origin == our_origin and signal.audience_hops == 0 and giver not in our_peers:
        return f"{giver} is not our peer and the signal may not be relayed"
    return None


def tally(verdicts: list[tuple[str, str, object, str, int | None]]) -> dict[str, int]:
    """Counts from (giver origin, verdict, time, id, local API key) rows: one judgement per
    origin, its latest; `seen` once per reporter (a remote origin, or one of our API keys)."""
    latest: dict[str, tuple[object, str, str]] = {}
    seen: set[tuple[str, int | None]] = set()
    for origin, verdict, at, uid, submitted_by in verdicts:
        if verdict == "seen":
            seen.add((origin, submitted_by))
            continue
        held = latest.get(origin)
        if held is None or (at, uid) > (held[0], held[1]):
            latest[origin] = (at, uid, verdict)
    counts = Counter(v for _, _, v in latest.values())
    if seen:
        counts["seen"] = len(seen)
    return dict(sorted(counts.items()))


def recount(session: Session, signal: SignalRow) -> None:
    """Recompute `signal`'s counts and status from every stored verdict on it."""
    rows = session.execute(
        select(  # type: ignore[call-overload]
            FeedbackRow.origin,
            FeedbackRow.verdict,
            FeedbackRow.created_at,
            FeedbackRow.uid,
            FeedbackRow.submitted_by,
        )
        .where(FeedbackRow.signal_origin == signal.origin)
        .where(FeedbackRow.signal_uid == signal.uid)
    ).all()
    counts = tally([(r[0], r[1], r[2], r[3], r[4]) for r in rows])
    signal.feedback_counts = counts  # a new dict, so the JSON column is seen as changed
    signal.feedback_status = aggregate_status(counts)


def report_seen(node: Node, hits: list[tuple[str, str]], submitted_by: int) -> None:
    """`seen` feedback for matched signals, when the caller asked for it.

    Once per (API key, signal), ever: `seen` says the signal was useful to look at, and
    repeating a match must not grow the log and the origin's feedback without bound.
    """
    with transaction(node) as tx:
        for uid, origin in dict.fromkeys(hits):
            if not limits.claim_seen(tx.session, node.db.is_sqlite, submitted_by, origin, uid):
                continue
            signal = repos.get_signal(tx.session, uid, origin)
            if signal is not None:
                record_feedback(tx, signal, "seen", None, submitted_by)
