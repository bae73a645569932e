"""Match work off the event loop, shared fairly between API keys.

Matching is CPU work (a PDQ search at a high threshold, TLSH over a message): run on the event
loop it stalls every other request of the worker, `/healthz` included. So it runs in worker
threads, at most `threads` at once, and each API key may hold at most `per_key` of those slots
(queued or running) in this worker: a key that floods waits behind its own requests, while
another key's request finds a free slot at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

__all__ = ["MatchGate"]


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
