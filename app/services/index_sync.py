"""Keeps a worker's in-memory MatchIndex in step with the database.

Every change to a signal sets its `change_seq` to the log index of the entry recording it. Log
indexes are assigned under the sequencer lock and committed in order, so "rows with change_seq >
the last one applied" never skips a commit. Each worker polls that every `index_poll_interval`
seconds (a few indexed rows, usually none) and also right after its own writes.
"""

from __future__ import annotations

import logging
import threading

from app.services.node import Node
from app.signals.match_index import IndexedSignal
from app.storage import repos
from app.storage.models import SignalRow

log = logging.getLogger("signet.index")


def _indexed(row: SignalRow) -> IndexedSignal:
    return IndexedSignal(
        row_id=row.id or 0,
        type=row.type,
        match_key=row.match_key,
        value=row.value,
        valid_until=row.valid_until.timestamp(),
        active=row.status == "active",
    )


class IndexSync:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.applied_seq = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> None:
        """Full load at start-up."""
        with self._lock, self.node.db.read() as session:
            seq = repos.max_change_seq(session)
            rows = repos.all_active(session)
            self.node.index.load([_indexed(r) for r in rows])
            self.applied_seq = seq
        log.info("match index loaded: %s", self.node.index.stats())

    def refresh(self) -> int:
        """Apply every change committed since the last refresh; returns how many."""
        with self._lock:
            total = 0
            while True:
                with self.node.db.read() as session:
                    rows = repos.changed_since(session, self.applied_seq)
                if not rows:
                    return total
                self.node.index.apply([_indexed(r) for r in rows])
                self.applied_seq = rows[-1].change_seq
                total += len(rows)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.node.settings.index_poll_interval):
            try:
                self.refresh()
            except Exception:  # the next poll retries; never let the thread die
                log.exception("index refresh failed")
