"""Fault injection on both engines (issue 9): a node process killed with SIGKILL in the middle
of a submit batch, and a receiver killed in the middle of a pull. Afterwards the exchange log
verifies (`signet audit verify`, the existing verifier), nothing acknowledged is lost and
nothing is doubled.

The node's database is `db_url` (a SQLite file, or this test process's private PostgreSQL
database); the pull test runs on PostgreSQL here, its SQLite twin is in test_federation_e2e.
The shared PostgreSQL server itself is never restarted: other test processes use it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.e2e.node_proc import SIGNET
from tests.e2e.test_federation_e2e import Proc, key, nodes, wait_for

pytestmark = pytest.mark.e2e

BATCH = 500


def scalar(db_url: str, sql: str) -> int:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def verify_log(p: Proc) -> None:
    audit = key(p, "audit")
    r = p.cli(
        "audit",
        "verify",
        p.url,
        "--key",
        p.cli("key", "show").stdout.strip(),
        "--token",
        audit["Authorization"][7:],
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def batch(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "md5", "value": f"{n * BATCH + i:032x}", "categories": ["csam"]}
        for i in range(BATCH)
    ]


def test_node_killed_mid_submit_loses_and_doubles_nothing(tmp_path: Path, db_url: str) -> None:
    with nodes(tmp_path, "faults.test") as (node,):
        node.env["SIGNET_DATABASE_URL"] = db_url
        node.start()
        auth = key(node, "submit")
        acked: list[int] = []
        failed: list[int] = []

        def submit_forever() -> None:
            for n in range(1000):
                try:
                    r = httpx.post(
                        node.url + "/v1/signals",
                        headers=auth,
                        json={"signals": batch(n)},
                        timeout=60,
                    )
                except httpx.HTTPError:
                    failed.append(n)
                    return
                if r.status_code == 200 and r.json()["created"] == BATCH:
                    acked.append(n)
                else:
                    failed.append(n)
                    return

        client = threading.Thread(target=submit_forever, daemon=True)
        client.start()
        wait_for(lambda: len(acked) >= 2, 120)
        node.stop(signal.SIGKILL)  # most likely in the middle of the next batch
        client.join(timeout=60)
        assert failed, "every batch finished before the kill"

        rows = scalar(db_url, "SELECT count(*) FROM signal")
        # A batch is one transaction: it is there whole or not at all.
        assert rows % BATCH == 0 and rows >= len(acked) * BATCH, (rows, acked)
        node.start()
        # Submitting every batch again doubles nothing: what landed is answered `duplicate`.
        for n in [*acked, *failed]:
            r = httpx.post(
                node.url + "/v1/signals", headers=auth, json={"signals": batch(n)}, timeout=60
            )
            assert r.status_code == 200, r.text
        total = (len(acked) + len(failed)) * BATCH
        assert scalar(db_url, "SELECT count(*) FROM signal") == total
        assert scalar(db_url, "SELECT count(DISTINCT value) FROM signal") == total
        assert scalar(db_url, "SELECT count(*) FROM log_entry WHERE kind = 'signal'") == total
        verify_log(node)


def test_receiver_killed_mid_pull_on_postgres(tmp_path: Path, db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("the SQLite twin is test_federation_e2e.test_receiver_killed_mid_pull_...")
    total = 3000
    with nodes(tmp_path, "src.test", "dst.test", SIGNET_SYNC_INTERVAL="3600") as (src, dst):
        dst.env["SIGNET_DATABASE_URL"] = db_url
        src.start()
        dst.start()
        src.cli("peers", "add", dst.url, "--key", dst.cli("key", "show").stdout.strip())
        auth = key(src, "submit")
        for n in range(total // BATCH):
            httpx.post(
                src.url + "/v1/signals", headers=auth, json={"signals": batch(n)}, timeout=60
            ).raise_for_status()
        dst.stop()
        dst.cli("peers", "add", src.url, "--key", src.cli("key", "show").stdout.strip())

        sync = subprocess.Popen(
            [SIGNET, "sync", "src.test"],
            env=dst.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sync.poll() is None:
                with contextlib.suppress(Exception):
                    if scalar(db_url, "SELECT count(*) FROM signal") > 0:
                        break
                time.sleep(0.01)
            sync.send_signal(signal.SIGKILL)
        finally:
            sync.wait(timeout=10)
        partial = scalar(db_url, "SELECT count(*) FROM signal")
        assert partial < total, "the pull finished before it could be killed"

        dst.cli("sync", "src.test")
        assert scalar(db_url, "SELECT count(*) FROM signal") == total
        assert scalar(db_url, "SELECT count(DISTINCT uid) FROM signal") == total
        # Green signals: each signal row is its own receipt (app/services/sync.py).
        assert scalar(db_url, "SELECT count(*) FROM received_record") == 0
        assert scalar(db_url, "SELECT count(*) FROM log_entry WHERE kind = 'received'") == total
        dst.start()
        verify_log(dst)
