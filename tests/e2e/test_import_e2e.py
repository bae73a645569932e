"""`signet import` into a running node: the imported hashes become matchable through the node's
own `/v1/match` (its index follows the log), alongside signals submitted over HTTP during the
import, and the log still verifies with the independent auditor (`signet audit verify`).
Both engines: the node and the import share the database given by `db_url`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.node_proc import SIGNET, running_node

BOUND = 30.0  # seconds; only catches "never" (the index polls every 0.5 s)


def pdq(i: int) -> str:
    return f"{(i * 2654435761) % (1 << 64):016x}" * 4


def _matches(url: str, key: str, type_: str, value: str) -> bool:
    r = httpx.post(
        url + "/v1/match",
        json={"queries": [{"type": type_, "value": value}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return bool(r.json()["results"][0]["matches"])


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {BOUND} s"
        time.sleep(0.2)


@pytest.mark.e2e
def test_imported_hashes_match_on_the_running_node(db_url: str, tmp_path: Path) -> None:
    n = 3000
    f = tmp_path / "list.jsonl"
    with f.open("w") as out:
        for i in range(n):
            item = {"type": "pdq", "value": pdq(i), "quality": 90, "categories": ["csam"]}
            if i % 2:
                item = {"type": "md5", "value": f"{i:032x}", "categories": ["csam"]}
            out.write(json.dumps(item) + "\n")
    with running_node(tmp_path, extra_env={"SIGNET_DATABASE_URL": db_url}) as node:
        key = node.create_key("submit,match,read,audit")
        assert not _matches(node.url, key, "md5", f"{n - 1:032x}")
        imp = subprocess.Popen(
            [SIGNET, "import", str(f), "--batch", "250", "--quiet"],
            env=node.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The API keeps writing while the import holds the sequencer lock batch by batch.
        sent = []
        for j in range(5):
            value = f"{10**9 + j:032x}"
            r = httpx.post(
                node.url + "/v1/signals",
                json={"signals": [{"type": "md5", "value": value, "categories": ["csam"]}]},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert r.status_code == 200 and r.json()["created"] == 1, r.text
            sent.append(value)
        assert imp.wait(timeout=300) == 0
        last_md5, last_pdq = f"{n - 1:032x}", pdq(n - 2)
        near = last_pdq[:-2] + ("00" if last_pdq[-2:] != "00" else "ff")  # <= 8 bits away
        _until(lambda: _matches(node.url, key, "md5", last_md5), "imported md5")
        _until(lambda: _matches(node.url, key, "pdq", near), "imported PDQ, near copy")
        assert _matches(node.url, key, "md5", "1".zfill(32))
        for value in sent:
            assert _matches(node.url, key, "md5", value)
        audit = subprocess.run(
            [SIGNET, "audit", "verify", node.url, "--key", _verifier_key(node.env)],
            env={**node.env, "SIGNET_AUDIT_KEY": key},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert audit.returncode == 0, audit.stdout + audit.stderr


def _verifier_key(env: dict[str, str]) -> str:
    out = subprocess.run(
        [SIGNET, "key", "show"], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip()
