"""Requests per minute per API key (`SIGNET_RATE_LIMIT`), shared by every worker of a node.

The bucket lives in the node's database (`rate_bucket`, one row per key), so the limit holds
however many workers or processes serve the node: a token bucket holding one minute's worth of
requests, refilled continuously at `limit / 60` per second.

Reaching the database on every request would put a write on the match path, which otherwise
needs no I/O, and would let one key's flood queue behind the database lock with everyone
else's. So each worker *leases* tokens: one statement takes up to about a second's worth
(`lease`) at a time and the worker spends them from memory. Once the shared bucket is empty the
worker remembers until when, and refuses that key from memory until then: a flooding key costs
one database statement per refill window, not one per request, and never touches another key's
row. The price is slack: across W workers up to W x `lease` tokens can be leased but not yet
spent, so a key may briefly exceed the limit by that much (documented in docs/security.md).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from app.errors import RateLimited
from app.storage import limits
from app.storage.db import Database

__all__ = ["RateLimited", "RateLimiter", "for_db"]

MAX_LEASE = 100


@dataclass
class _Local:
    tokens: int = 0  # leased from the shared bucket, not yet spent
    refused_until: float = 0.0  # the shared bucket was empty; refuse from memory until then


class RateLimiter:
    """One worker's view of the shared buckets."""

    def __init__(
        self, db: Database, per_minute: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.lease = max(1, min(MAX_LEASE, per_minute // 60))
        self._clock = clock
        self._lock = threading.Lock()
        self._local: dict[int, _Local] = {}
        self._ids: dict[str, int] = {}  # key hash -> key id, for refusals before auth runs

    def note_key(self, key_hash: str, key_id: int) -> None:
        """Remember which key id a key hash is (so `refused_for_hash` can answer)."""
        if self._ids.get(key_hash) != key_id:
            with self._lock:
                if len(self._ids) > 100_000:
                    self._ids.clear()
                self._ids[key_hash] = key_id

    def refused_for_hash(self, key_hash: str) -> RateLimited | None:
        key_id = self._ids.get(key_hash)
        return None if key_id is None else self.refused_for(key_id)

    def take_local(self, key_id: int) -> bool:
        """Spend a leased token: True if done, False if the shared bucket must be asked.

        Raises RateLimited, without I/O, while the key is known to be over its limit."""
        now = self._clock()
        with self._lock:
            local = self._local.get(key_id)
            if local is None:
                return False
            if local.refused_until > now:
                raise self._refusal(local.refused_until - now)
            if local.tokens > 0:
                local.tokens -= 1
                return True
            return False

    def refused_for(self, key_id: int) -> RateLimited | None:
        """The refusal for a key known (in memory) to be over its limit right now, else None."""
        now = self._clock()
        with self._lock:
            local = self._local.get(key_id)
            if local is None or local.refused_until <= now:
                return None
            return self._refusal(local.refused_until - now)

    def take_shared(self, key_id: int) -> None:
        """Lease tokens from the database and spend one; RateLimited if the bucket is empty."""
        now = self._clock()
        granted, left = limits.take_tokens(
            self.db, key_id, self.lease, self.capacity, self.rate, now
        )
        with self._lock:
            local = self._local.setdefault(key_id, _Local())
            if granted == 0:
                wait = (1.0 - left) / self.rate
                local.refused_until = now + wait
                raise self._refusal(wait)
            local.tokens += granted - 1
            local.refused_until = 0.0
            if len(self._local) > 100_000:  # keys are few; bound memory anyway
                self._local = {key_id: local}

    def _refusal(self, wait: float) -> RateLimited:
        return RateLimited(
            f"this API key is over its limit of {self.per_minute} requests per minute "
            "(SIGNET_RATE_LIMIT); retry later",
            retry_after=max(1, math.ceil(wait)),
        )


_limiters: weakref.WeakKeyDictionary[Database, RateLimiter] = weakref.WeakKeyDictionary()
_limiters_lock = threading.Lock()


def for_db(db: Database, per_minute: int) -> RateLimiter | None:
    """This worker's limiter for the node's database; None when the limit is off (0)."""
    if per_minute <= 0:
        return None
    limiter = _limiters.get(db)
    if limiter is None or limiter.per_minute != per_minute:
        with _limiters_lock:
            limiter = _limiters.get(db)
            if limiter is None or limiter.per_minute != per_minute:
                limiter = _limiters[db] = RateLimiter(db, per_minute)
    return limiter
