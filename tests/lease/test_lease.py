"""The pull lease: one holder among real processes, taken over when the holder is killed.

Real processes on both engines; the holder dies by SIGKILL (no clean release), so the others
must wait out the ttl. Bounds are generous ("eventually within N s"); delays are printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.services.lease import Lease
from app.services.node import Node
from app.storage import migrate
from app.storage.db import Database

HOLDER = str(Path(__file__).with_name("lease_holder.py"))
TTL = 1.5
BOUND = 30.0


class Proc:
    def __init__(self, url: str) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root}
        self.p = subprocess.Popen(
            [sys.executable, HOLDER, url, str(TTL)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.me = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            if line.startswith("READY"):
                self.me = line.split()[1]
            self.lines.append(line.strip())

    def held(self) -> bool:
        """Holds the lease per its last report."""
        events = [ln.split()[0] for ln in self.lines if ln.split()[0] in ("HELD", "LOST")]
        return bool(events) and events[-1] == "HELD"


def _wait(pred, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < BOUND:
        if pred():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {BOUND}s: {what}")


@pytest.fixture
def url(db_url: str) -> str:
    db = Database(db_url)
    migrate.upgrade(db)
    db.dispose()
    return db_url


def test_one_holder_and_takeover_after_kill9(url: str) -> None:
    procs = [Proc(url) for _ in range(3)]
    try:
        _wait(lambda: sum(p.held() for p in procs) == 1, "one of three holds the lease")
        time.sleep(2 * TTL)  # renewals go on: still exactly one holder, the same one
        holders = [p for p in procs if p.held()]
        assert len(holders) == 1
        first = holders[0]
        assert all(
            not any(ln.startswith("HELD") for ln in p.lines) for p in procs if p is not first
        )
        db = Database(url)
        row = Lease(db, "pull").current()
        assert row is not None and row[0] == first.me
        generation = row[2]

        first.p.send_signal(signal.SIGKILL)
        first.p.wait(10)
        rest = [p for p in procs if p is not first]
        took = _wait(lambda: sum(p.held() for p in rest) == 1, "a survivor takes the lease")
        print(f"lease taken over {took:.2f} s after SIGKILL of its holder (ttl {TTL} s)")
        second = next(p for p in rest if p.held())
        row = Lease(db, "pull").current()
        assert row is not None and row[0] == second.me and row[2] == generation + 1
        time.sleep(TTL)
        assert [p.held() for p in rest].count(True) == 1
        db.dispose()
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.kill()
            p.p.wait(10)
            if p.p.stdout is not None:
                p.p.stdout.close()


def test_clean_release_and_expiry_in_process(url: str) -> None:
    db = Database(url)
    a, b = Lease(db, "pull", ttl=60), Lease(db, "pull", ttl=60)
    assert a.try_acquire() and a.held
    assert not b.try_acquire() and not b.held
    assert a.try_acquire()  # renewal
    a.release()
    assert not a.held
    assert b.try_acquire() and b.held  # released: taken at once, no ttl to wait out
    other = Lease(db, "other", ttl=60)
    assert other.try_acquire()  # leases are independent by name
    # An expired lease (holder gone quiet) is taken; the old holder then cannot renew.
    short = Lease(db, "short", ttl=0.5)
    late = Lease(db, "short", ttl=60)
    assert short.try_acquire()
    time.sleep(0.6)
    assert not short.held
    assert late.try_acquire()
    assert not short.try_acquire()
    db.dispose()


def test_metrics_show_the_holder_expiry_and_handovers(node: Node) -> None:
    """/metrics said nothing about the pull lease: an operator of several hosts could not tell
    which process pulled, or whether any did, without reading the table by hand."""
    from prometheus_client.parser import text_string_to_metric_families

    from app.observability import render

    first, second = Lease(node.db, "pull", ttl=6.0), Lease(node.db, "pull", ttl=6.0)
    assert first.try_acquire()
    page = render(node).decode()
    assert f'signet_lease_holder{{holder="{first.me}",lease="pull"}} 1.0' in page, page
    assert 'signet_lease_generation{lease="pull"} 1.0' in page
    current = first.current()
    assert current is not None
    expires = [
        sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "signet_lease_expires_timestamp_seconds"
    ]
    assert expires == [current[1] / 1000]

    first.release()  # a clean stop: the next process takes it at once
    assert second.try_acquire()
    page = render(node).decode()
    assert f'signet_lease_holder{{holder="{second.me}",lease="pull"}} 1.0' in page
    assert first.me not in page
    assert 'signet_lease_generation{lease="pull"} 2.0' in page
