"""Token buckets for OPRF evaluations: per member node at a holder, per API key at a member.

Kept apart from any general request limiter on purpose: the unit here is an *evaluation* (one
blinded element), not a request, because a batch of 1,000 elements is 1,000 guesses at an
identifier. In memory and per process: with several workers each worker keeps its own buckets,
so the effective limit is the configured one times the worker count (docs/identifiers.md); the
holder's log tally is the exact, shared count an auditor reads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from app.errors import SignetError

__all__ = ["EvaluationLimiter", "RateLimited"]


class RateLimited(SignetError):
    """Over the limit: `retry_after` seconds until the request would fit."""

    status = 429

    def __init__(self, who: str, retry_after: int, limit: int) -> None:
        super().__init__(
            f"{who} is over its limit of {limit} OPRF evaluations per minute; "
            f"retry after {retry_after} s"
        )
        self.who = who
        self.retry_after = retry_after
        self.limit = limit


class EvaluationLimiter:
    """`per_minute` evaluations per key, with a burst of one minute's worth."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def take(self, key: str, cost: int, who: str | None = None) -> None:
        """Spend `cost` tokens for `key`, or raise RateLimited (spending nothing)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self.rate)
            if cost > tokens:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((cost - tokens) / self.rate) if cost <= self.per_minute else 60
                raise RateLimited(who or key, max(1, wait), self.per_minute)
            self._buckets[key] = (tokens - cost, now)
