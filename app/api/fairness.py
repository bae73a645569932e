"""Match work off the event loop, shared fairly between API keys.

Matching is CPU work (a PDQ search at a high threshold, TLSH over a message): run on the event
loop it stalls every other request of the worker, `/healthz` included. So it runs in worker
threads, at most `threads` at once, and each API key may hold at most `per_key` of those slots
(queued or running) in this worker: a key that floods waits behind its own requests, while
another key's request finds a free slot at once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

__all__ = ["MatchCoalescer", "MatchGate"]


class MatchGate:
    def __init__(self, threads: int = 4, per_key: int = 2) -> None:
        self._threads = anyio.CapacityLimiter(threads)
        self._per_key = per_key
        self._gates: dict[int, asyncio.Semaphore] = {}

    async def run(self, key_id: int, fn: Callable[..., T], *args: object) -> T:
        gate = self._gates.get(key_id)
        if gate is None:
            gate = self._gates[key_id] = asyncio.Semaphore(self._per_key)
        async with gate:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)


class MatchCoalescer:
    """Small PDQ (and md5) requests that arrive together are answered by one search.

    Under load many connections each ask for one or a few PDQ codes or md5 digests. Searched
    one request at a time, each pays the trip to a worker thread and the fixed costs of a search
    call; taken together, the index searches them as one batch (a batch of 16 codes costs ~0.16
    ms per code at 1M, one code alone ~0.28 ms) behind one thread trip, and md5 lookups share
    the trip too. Per API key, one batch runs at a time, in one of that key's slots of the gate;
    the key's requests arriving meanwhile form its next batch, so an idle worker adds no wait
    and a busy one batches more, and a key whose searches are slow delays only its own requests,
    as before. Only plain queries qualify (pdq: type, value, a threshold up to the default; md5:
    type and value): their answer cannot be a per-item refusal, whose field name would carry the
    combined batch's index.
    """

    MAX_REQUEST = 4  # queries in a request that may join a batch
    MAX_BATCH = 64  # queries in one combined search

    def __init__(self, gate: MatchGate) -> None:
        self.gate = gate  # the match work of every request, batched or not, runs through it
        self._pending: dict[int, list[tuple[list[Any], asyncio.Future[Any]]]] = {}
        self._draining: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def eligible(
        cls, queries: list[Any], max_threshold: int, max_queries: int = MAX_REQUEST
    ) -> bool:
        """`max_threshold` is the lower of the default and the node's widest allowed
        threshold, `max_queries` the node's batch limit: an eligible request can never be refused
        as a whole, so it can never fail the combined batch it joins."""
        if not 0 < len(queries) <= min(cls.MAX_REQUEST, max_queries):
            return False
        for q in queries:
            if not isinstance(q, dict):
                return False
            if q.get("type") == "md5":  # an exact lookup: as cheap, and batched as well
                value = q.get("value")
                if (
                    q.keys() != _MD5_KEYS
                    or not isinstance(value, str)
                    or not _HEX32.fullmatch(value)
                    or value.lower() == _EMPTY_MD5  # refused per item: not here
                ):
                    return False
                continue
            if q.get("type") != "pdq" or not q.keys() <= _PLAIN:
                return False
            value, threshold = q.get("value"), q.get("threshold")
            if not isinstance(value, str) or not _HEX64.fullmatch(value):
                return False
            if threshold is not None and (
                type(threshold) is not int or not 0 <= threshold <= max_threshold
            ):
                return False
        return True

    async def run(
        self, key_id: int, fn: Callable[[list[Any]], Any], queries: list[Any], limit: int
    ) -> Any:
        """`fn(combined queries)` returns a MatchBatchResult; each caller gets its own slice,
        renumbered from 0."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.setdefault(key_id, []).append((queries, future))
        if key_id not in self._draining:
            self._draining.add(key_id)
            task = loop.create_task(self._drain(key_id, fn, min(limit, self.MAX_BATCH)))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, key_id: int, fn: Callable[[list[Any]], Any], limit: int) -> None:
        pending = self._pending[key_id]
        try:
            while pending:
                batch: list[tuple[list[Any], asyncio.Future[Any]]] = []
                size = 0
                while pending and (not batch or size + len(pending[0][0]) <= limit):
                    item = pending.pop(0)
                    batch.append(item)
                    size += len(item[0])
                combined = [q for queries, _ in batch for q in queries]
                try:
                    result = await self.gate.run(key_id, fn, combined)
                except Exception as exc:  # every member gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for queries, future in batch:
                    part = result.results[start : start + len(queries)]
                    start += len(queries)
                    if not future.done():
                        future.set_result(
                            type(result)(
                                results=[
                                    r.model_copy(update={"index": i}) for i, r in enumerate(part)
                                ]
                            )
                        )
        finally:
            self._draining.discard(key_id)
            if not pending:
                self._pending.pop(key_id, None)


_PLAIN = frozenset({"type", "value", "threshold"})
_MD5_KEYS = frozenset({"type", "value"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
