"""`signet serve --workers 2`: one worker holds the node's pull lease; SIGKILL it and the other
worker takes the lease over (and with it the pull loops). Bounds are generous; delays printed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from app.services.lease import Lease
from app.storage.db import Database

from .node_proc import free_port, serve_process

pytestmark = pytest.mark.e2e

BOUND = 30.0


def _holder_pid(db: Database) -> int | None:
    row = Lease(db, "pull").current()
    if row is None or row[1] < time.time() * 1000:
        return None
    return int(row[0].split(":")[1])


def test_pull_lease_moves_to_the_surviving_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SIGNET_DATA_DIR": str(tmp_path / "data"),
        "SIGNET_PORT": str(port),
        "SIGNET_HOST": "127.0.0.1",
        "SIGNET_ORIGIN": "lease.example",
        "SIGNET_BACKGROUND": "true",
        "SIGNET_LEASE_TTL": "1.5",
        "SIGNET_LOG_LEVEL": "warning",
    }
    for name in ("SIGNET_DATABASE_URL", "SIGNET_URL", "SIGNET_API_KEY"):
        env.pop(name, None)
    with serve_process(env, tmp_path / "serve.log", "--workers", "2") as proc:
        db = Database(f"sqlite:///{tmp_path / 'data' / 'signet.db'}")

        def workers() -> set[int]:
            out = set()
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        stat = Path(f"/proc/{entry}/stat").read_text()
                    except OSError:
                        continue
                    if int(stat.rsplit(")", 1)[1].split()[1]) == proc.pid:
                        out.add(int(entry))
            return out

        start = time.monotonic()
        holder = None
        while time.monotonic() - start < BOUND:
            holder = _holder_pid(db)
            if holder is not None and holder in workers() and len(workers()) >= 2:
                break
            time.sleep(0.1)
        assert holder is not None and holder in workers(), (holder, workers())
        os.kill(holder, signal.SIGKILL)
        killed = time.monotonic()
        new = None
        while time.monotonic() - killed < BOUND:
            new = _holder_pid(db)
            if new is not None and new != holder:
                break
            time.sleep(0.1)
        assert new is not None and new != holder and new in workers(), (new, holder, workers())
        print(f"pull lease moved to worker {new} {time.monotonic() - killed:.2f} s after SIGKILL")
        db.dispose()
