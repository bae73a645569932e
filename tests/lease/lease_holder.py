"""A process that competes for a lease and reports, one line each, when it takes or loses it.

    python tests/lease/lease_holder.py DB_URL TTL

Run by test_lease.py as several real processes; the test kills the holder with SIGKILL.
"""

from __future__ import annotations

import sys
import threading
import time

from app.services.lease import Lease
from app.storage.db import Database


def main() -> None:
    url, ttl = sys.argv[1], float(sys.argv[2])
    lease = Lease(Database(url), "pull", ttl=ttl)

    def changed(held: bool) -> None:
        print(f"{'HELD' if held else 'LOST'} {lease.me} {time.time():.3f}", flush=True)

    print(f"READY {lease.me}", flush=True)
    lease.keep(threading.Event(), changed)


if __name__ == "__main__":
    main()
