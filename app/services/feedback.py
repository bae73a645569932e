"""Feedback: anyone's verdict on a signal, counted per signal into an aggregate status.

Aggregate status, from the verdict counts (`seen` only says the signal was useful to look at):
- `none`      no verdict other than `seen`;
- `confirmed` true positives outnumber false positives, disputes and overturned appeals;
- `disputed`  false positives + disputes + overturned appeals are at least the true positives.
"""

from __future__ import annotations

from app.errors import NotFound
from app.schemas import FeedbackIn, FeedbackOut
from app.services import records
from app.services.ids import new_id
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
    count(signal, verdict)
    tx.session.add(signal)
    return row


def count(signal: SignalRow, verdict: str) -> None:
    counts = dict(signal.feedback_counts)
    counts[verdict] = counts.get(verdict, 0) + 1
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
