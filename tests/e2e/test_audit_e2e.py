"""`signet audit verify` against real `signet serve` processes on loopback.

1. One node on SQLite: submit and retract over HTTP, audit twice with --state (both pass),
   then alter one stored entry by SQL: the audit fails and names it.
2. Two `signet serve` processes on ONE PostgreSQL database, both appending (and publishing
   checkpoints) concurrently for a few seconds: one linear log that the auditor verifies.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.crypto import merkle
from app.crypto.canonical import canonical_json
from tests.conftest import scratch_pg_database

from .node_proc import SIGNET, free_port, running_node, serve_process

pytestmark = pytest.mark.e2e

HAMMER_SECONDS = 10.0


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIGNET, *args], env=env, capture_output=True, text=True, timeout=timeout)


def md5_items(n: int, tlp: str = "clear") -> list[dict[str, object]]:
    return [
        {
            "type": "md5",
            "value": secrets.token_hex(16),
            "categories": ["csam"],
            "audience": {"tlp": tlp},
        }
        for _ in range(n)
    ]


def submit(url: str, key: str, items: list[dict[str, object]]) -> list[str]:
    r = httpx.post(
        url + "/v1/signals",
        json={"signals": items},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"] if i["status"] == "created"]


def checkpoint(url: str, admin: str) -> None:
    r = httpx.post(url + "/v1/log/checkpoint", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200, r.text


def test_audit_a_live_node_twice_then_catch_tampering(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        platform = node.create_key("submit,read")
        auditor = node.create_key("audit")
        admin = node.create_key("admin")
        vkey = run("key", "show", env=node.env).stdout.strip()
        ids = submit(node.url, platform, md5_items(3) + md5_items(1, "red"))
        r = httpx.post(
            f"{node.url}/v1/signals/{ids[0]}/retract",
            json={"reason": "false positive"},
            headers={"Authorization": f"Bearer {platform}"},
        )
        assert r.status_code == 200, r.text
        checkpoint(node.url, admin)
        state = tmp_path / "audit-state.json"
        audit = [
            "audit",
            "verify",
            node.url,
            "--key",
            vkey,
            "--token",
            auditor,
            "--state",
            str(state),
        ]
        first = run(*audit, env=node.env)
        assert first.returncode == 0, first.stderr
        submit(node.url, platform, md5_items(2))
        checkpoint(node.url, admin)
        second = run(*audit, env=node.env)
        assert second.returncode == 0, second.stderr
        assert '"ok": true' in second.stdout
        # An operator (or intruder) edits one stored entry by hand.
        db = sqlite3.connect(tmp_path / "data" / "signet.db")
        with db:
            (idx,) = db.execute(
                "SELECT idx FROM log_entry WHERE kind = 'retraction' ORDER BY idx LIMIT 1"
            ).fetchone()
            db.execute(
                "UPDATE log_entry SET data = replace(data, 'false positive', 'true positive') "
                "WHERE idx = ?",
                (idx,),
            )
        db.close()
        third = run(*audit, "--no-progress", env={**node.env, "COLUMNS": "400"})
        assert third.returncode == 1
        assert f"entry {idx}:" in third.stderr, third.stderr


# --- two processes, one PostgreSQL database ---------------------------------------------------


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with serve_process({**env, "SIGNET_PORT": str(port)}, log):
        yield f"http://127.0.0.1:{port}"


def test_two_processes_on_one_postgres_log(tmp_path: Path) -> None:
    with scratch_pg_database(f"signet_audit_e2e_{os.getpid()}") as db_url:
        env = {
            **os.environ,
            "SIGNET_DATA_DIR": str(tmp_path / "data"),  # shared: one node key for both
            "SIGNET_DATABASE_URL": db_url,
            "SIGNET_HOST": "127.0.0.1",
            "SIGNET_ORIGIN": "pg.example",
            "SIGNET_LOG_LEVEL": "warning",
            # Both processes also publish checkpoints on a short cadence while appending.
            "SIGNET_BACKGROUND": "true",
            "SIGNET_CHECKPOINT_INTERVAL": "0.3",
        }
        for name in ("SIGNET_URL", "SIGNET_API_KEY", "SIGNET_PORT"):
            env.pop(name, None)
        assert run("db", "upgrade", env=env).returncode == 0
        platform = run(
            "api-keys", "create", "--name", "p", "--scopes", "submit", env=env
        ).stdout.strip()
        auditor = run(
            "api-keys", "create", "--name", "a", "--scopes", "audit", env=env
        ).stdout.strip()
        admin = run(
            "api-keys", "create", "--name", "o", "--scopes", "admin", env=env
        ).stdout.strip()
        vkey = run("key", "show", env=env).stdout.strip()
        with serve(env, tmp_path / "a.log") as url_a, serve(env, tmp_path / "b.log") as url_b:
            stop = time.monotonic() + HAMMER_SECONDS
            counts: list[int] = []
            errors: list[BaseException] = []

            def hammer(url: str) -> None:
                n = 0
                try:
                    while time.monotonic() < stop:
                        ids = submit(url, platform, md5_items(5))
                        n += len(ids)
                        r = httpx.post(
                            f"{url}/v1/signals/{ids[0]}/retract",
                            json={"reason": "test"},
                            headers={"Authorization": f"Bearer {platform}"},
                            timeout=30,
                        )
                        assert r.status_code == 200, r.text
                        n += 1
                except BaseException as exc:
                    errors.append(exc)
                counts.append(n)

            threads = [
                threading.Thread(target=hammer, args=(u,)) for u in (url_a, url_b, url_a, url_b)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=HAMMER_SECONDS + 60)
            assert not errors, errors
            checkpoint(url_b, admin)
            state = tmp_path / "state.json"
            for url in (url_a, url_b):
                r = run(
                    "audit",
                    "verify",
                    url,
                    "--key",
                    vkey,
                    "--token",
                    auditor,
                    "--state",
                    str(state),
                    env=env,
                    timeout=300,
                )
                assert r.returncode == 0, r.stderr
            print(f"appended {sum(counts)} signal entries from 2 processes in {HAMMER_SECONDS} s")
            # Spot-check the proofs the server computes against the audited checkpoint.
            saved = json.loads(state.read_text())
            size, root = saved["size"], base64.b64decode(saved["root"])
            assert size >= sum(counts)
            headers = {"Authorization": f"Bearer {auditor}"}
            for index in (0, size // 3, size - 1):
                r = httpx.get(
                    url_a + "/v1/log/proof/inclusion",
                    params={"index": index, "size": size},
                    headers=headers,
                )
                assert r.status_code == 200, r.text
                proof = [base64.b64decode(h) for h in r.json()["hashes"]]
                (entry,) = httpx.get(
                    url_b + "/v1/log/entries",
                    params={"start": index, "end": index + 1},
                    headers=headers,
                ).json()
                leaf = merkle.leaf_hash(canonical_json(entry["entry"]))
                merkle.verify_inclusion(leaf, index, size, proof, root)
