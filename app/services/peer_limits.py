"""Per-peer request limits on the federation endpoints (issue 9).

A pinned peer that turns hostile can sign as many requests as it likes; each costs us a
signature check, a nonce write and, for `records`, a page build. A token bucket per
authenticated peer origin caps that at `SIGNET_PEER_REQUESTS_PER_MINUTE` (burst: one minute's
worth). Past it the peer gets 429 with `Retry-After`, and the refusal is logged and counted.

In memory and per process: with several workers the effective limit is the setting times the
worker count, which is still a bound. Honest peers stay far below it (a pull is one request
per page of up to 1,000 records; a notify or cosign request per checkpoint).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from app.errors import RateLimited

__all__ = ["PeerRateLimited", "PeerRequestLimiter"]


class PeerRateLimited(RateLimited):
    """The peer is over its request budget (429 problem+json with Retry-After)."""

    def __init__(self, peer: str, retry_after: int, per_minute: int) -> None:
        super().__init__(
            f"{peer} is over its limit of {per_minute} federation requests per minute; "
            f"retry after {retry_after} s",
            retry_after,
        )
        self.peer = peer


class PeerRequestLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, last refill)

    def take(self, peer: str) -> None:
        """Spend one request of `peer`'s budget, or raise PeerRateLimited."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(peer, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[peer] = (tokens, now)
                raise PeerRateLimited(
                    peer, max(1, math.ceil((1.0 - tokens) / self._rate)), self.per_minute
                )
            self._buckets[peer] = (tokens - 1.0, now)
