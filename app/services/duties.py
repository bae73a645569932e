"""Per-peer background work that no peer can stall for the others.

A hostile or slow peer can make any call to it last until our total deadline
(`SIGNET_PEER_DEADLINE`). Duties that talk to every peer (witnessing, notifications) therefore
run each peer's call on its own short-lived thread, with at most one call in flight per
(duty, peer): a peer that hangs delays only its own next call, never checkpoints or the other
peers. A failure is logged and recorded by the task itself; the runner only guarantees that an
exception never escapes into, or stops, the loop that submitted the task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("signet.duties")


class PeerTasks:
    """At most one running task per peer for one duty, each on its own daemon thread."""

    def __init__(self, duty: str) -> None:
        self.duty = duty
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def busy(self) -> set[str]:
        with self._lock:
            return set(self._busy)

    def submit(self, peer: str, task: Callable[[], object]) -> bool:
        """Start `task` for `peer` unless the previous one is still running; True if started."""
        with self._lock:
            if peer in self._busy:
                return False
            self._busy.add(peer)

        def run() -> None:
            try:
                task()
            except Exception:  # the duty's loop lives on; the next round retries
                log.exception("%s for %s failed", self.duty, peer)
            finally:
                with self._lock:
                    self._busy.discard(peer)

        threading.Thread(target=run, name=f"{self.duty}-{peer}", daemon=True).start()
        return True
