"""Keeps a worker's in-memory MatchIndex in step with the database.

Every change to a signal sets its `change_seq` to the log index of the entry recording it, and
every feedback row carries the log index of its own entry. Log indexes are assigned under the
sequencer lock and committed in order, so "rows with change_seq > the last one applied" never
skips a commit. Each worker polls that every `index_poll_interval` seconds (a few indexed rows,
usually none) and also right after its own commits. Signal changes re-index the signal; feedback
only refreshes the `feedback_status` a hit shows.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from app import gcpause
from app.services import roster
from app.services.node import Node
from app.signals.match_index import IndexedSignal
from app.storage.models import FeedbackRow, SignalRow
from app.storage.sqlplan import unindexed

log = logging.getLogger("signet.index")

# Only what the index and a hit need: start-up reads these columns, never whole ORM objects.
_SIGNAL = SignalRow.__table__.c  # type: ignore[attr-defined]
_COLUMNS = (
    _SIGNAL.id,
    _SIGNAL.uid,
    _SIGNAL.origin,
    _SIGNAL.type,
    _SIGNAL.value,
    _SIGNAL.attrs,
    _SIGNAL.match_key,
    _SIGNAL.categories,
    _SIGNAL.indicators,
    _SIGNAL.opinion,
    _SIGNAL.confidence,
    _SIGNAL.reviewed,
    _SIGNAL.valid_until,
    _SIGNAL.status,
    _SIGNAL.feedback_status,
    _SIGNAL.change_seq,
)
_BATCH = 10_000
FREEZE_AT = 50_000  # signals; below this a full collection is short anyway (see `load`)


def _indexed(r: Any) -> IndexedSignal:
    # Unpacked by position (the order of _COLUMNS): a Row's attributes are looked up by name
    # on each access, which made this most of a refresh's cost.
    (
        row_id,
        uid,
        origin,
        type_,
        value,
        attrs,
        key,
        categories,
        indicators,
        opinion,
        confidence,
        reviewed,
        valid_until,
        status,
        feedback_status,
        change_seq,
    ) = r
    return IndexedSignal(
        row_id=row_id,
        type=type_,
        match_key=key,
        value=value,
        valid_until=valid_until.timestamp(),
        active=status == "active",
        public={
            "id": uid,
            "origin": origin,
            "type": type_,
            "categories": categories,
            "indicators": indicators,
            "opinion": opinion,
            "confidence": confidence,
            "reviewed": reviewed,
            "valid_until": valid_until,
            "feedback_status": feedback_status,
        },
        seq=change_seq,
        subdomains=type_ == "domain" and (attrs or {}).get("subdomains") is True,
    )


def _release_free_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's `malloc_trim`; elsewhere a
    no-op). A large load frees most of what it allocated (the rows read; the codes gathered
    for a private PDQ base, or for a shared one it had to build), but glibc returns freed
    memory below its top only when asked: at 1M signals 62 MiB of a worker's 126 MiB private
    RSS was such free memory (before a load onto a shared file stopped gathering codes)."""
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
        ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols, libc among them


def _max(session: Session, column: Any) -> int:
    from sqlalchemy import func

    return int(session.execute(select(func.max(column))).scalar() or 0)


class IndexSync:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.applied_seq = -1
        self.applied_feedback_seq = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._froze = False

    def load(self) -> None:
        """Full load at start-up, in id order and in batches.

        The index was once millions of long-lived Python objects (a few per signal). PDQ
        signals now leave none (columns in `SignalTable`), but exact-match, keyword and video
        signals still leave a few each (match keys, sets of row ids). The cyclic garbage
        collector would walk all of them on every full collection (2.2 s at 1M signals when
        every signal had its objects; the request stalls that follow are the tail of
        `/v1/match`), and the collections it triggers while they are being created make the load
        itself slower (the rows being read are objects too, a batch at a time). So collection is
        paused during the load, and what the load left is then frozen (`gc.freeze`): moved out of
        the collector's sight for good. Frozen objects are still freed by reference counting when
        a signal leaves the index; only cycles among them would linger, and the index makes none.
        Small indexes (tests, small nodes) are left to the collector as usual; `stop` unfreezes.
        """
        with gcpause.paused():
            self._load()
        if len(self.node.index) >= FREEZE_AT:
            gc.collect()
            gc.freeze()
            self._froze = True
            _release_free_heap()

    def _load(self) -> None:
        with self._lock, self.node.db.read() as session:
            seq = _max(session, col(SignalRow.change_seq))
            fb_seq = _max(session, col(FeedbackRow.change_seq))

            def signals() -> Iterator[IndexedSignal]:
                # A batch at a time: the index keeps only columns of each (no list of them all).
                last = 0
                while True:
                    rows = (
                        session.connection()
                        .execute(  # Core rows: see `refresh`
                            select(*_COLUMNS)
                            # In id order on the primary key: SQLite would otherwise sort
                            # every active signal for each batch (app/storage/sqlplan.py).
                            .where(_SIGNAL.id > last, unindexed(_SIGNAL.status) == "active")
                            .order_by(_SIGNAL.id)
                            .limit(_BATCH)
                        )
                        .all()
                    )
                    if not rows:
                        return
                    yield from map(_indexed, rows)
                    last = rows[-1].id

            self.node.index.load(signals(), seq, max_row_id=_max(session, _SIGNAL.id))
            self.applied_seq, self.applied_feedback_seq = seq, fb_seq
        log.info(
            "match index loaded: %s; PDQ bases: %s",
            self.node.index.stats(),
            self.node.index.pdq_memory(),
        )

    def refresh(self) -> int:
        """Apply every change committed since the last refresh; returns how many."""
        with self._lock:
            total = 0
            while True:
                # Plain column rows: a Core connection, no ORM session.
                with self.node.db.engine.connect() as conn:
                    rows = conn.execute(
                        select(*_COLUMNS)
                        .where(_SIGNAL.change_seq > self.applied_seq)
                        .order_by(_SIGNAL.change_seq)
                        .limit(_BATCH)
                    ).all()
                    if not rows:
                        break
                # A refresh follows every commit, and a bulk submit's brings 1,000 signals
                # (several objects each): with the collector paused while they are made, the
                # young ones are scanned once, and the full collections that many young ones
                # trigger, which walk the whole index, come that much less often.
                with gcpause.paused():
                    self.node.index.apply([_indexed(r) for r in rows])
                self.applied_seq = rows[-1].change_seq
                total += len(rows)
            self.node.index.caught_up(self.applied_seq)
            # Keep the roster's drop list fresh here, off the event loop, where the match path
            # reads it without waiting (roster.dropped_nowait).
            roster.dropped(self.node)
            return total + self._refresh_feedback()

    def _refresh_feedback(self) -> int:
        with self.node.db.read() as session:
            changed = session.execute(
                select(FeedbackRow.signal_origin, FeedbackRow.signal_uid, FeedbackRow.change_seq)  # type: ignore[call-overload]
                .where(col(FeedbackRow.change_seq) > self.applied_feedback_seq)
                .order_by(col(FeedbackRow.change_seq))
                .limit(_BATCH)
            ).all()
            if not changed:
                return 0
            by_origin: dict[str, set[str]] = {}
            for r in changed:
                by_origin.setdefault(r[0], set()).add(r[1])
            statuses: list[Any] = []
            # Per origin on its (origin, uid) index: a row-value IN scans the table on SQLite.
            for origin, uids in by_origin.items():
                statuses += session.execute(
                    select(SignalRow.id, SignalRow.feedback_status).where(  # type: ignore[call-overload]
                        col(SignalRow.origin) == origin, col(SignalRow.uid).in_(sorted(uids))
                    )
                ).all()
        for row_id, status in statuses:
            self.node.index.update_public(row_id, feedback_status=status)
        self.applied_feedback_seq = changed[-1][2]
        return len(changed)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self._froze:  # hand what was frozen back to the collector (several apps, tests)
            gc.unfreeze()
            self._froze = False

    def _run(self) -> None:
        while not self._stop.wait(self.node.settings.index_poll_interval):
            try:
                self.refresh()
            except Exception:  # the next poll retries; never let the thread die
                log.exception("index refresh failed")
