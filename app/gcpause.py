"""Pause CPython's cyclic garbage collector around a bounded burst of allocation.

Parsing and applying a page of 1,000 peer records allocates hundreds of thousands of
container objects (parsed records, row dicts, log entries), nearly all alive until the page is
done and then freed by reference counting. With the collector on, those allocations trigger
~35 young collections per page and, every few pages, a full collection that walks every object
of the process (the app, its modules, SQLAlchemy's caches): measured at 27-41 us per record
applied, 12-15 % of the receiver's CPU (docs/scaling.md, "Ingest"). Paused, the page's cyclic
garbage (if any) waits until the page is done, and the collector runs as usual on the next
allocations.

Process-wide and thread-safe: pauses nest and overlap across threads, and the collector is
turned back on only when the last pause ends, and only if it was on when the first began (code
that turned it off itself keeps it off). The work inside a pause must be bounded (one page:
at most 1,000 records and 8 MiB of input), so the garbage it can leave is bounded too.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    global _active, _was_enabled
    with _lock:
        if _active == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _was_enabled:
                gc.enable()
