"""Six real nodes configured from one roster, each syncing only with its neighbours (issue 17).

Before rosters, a green `hops: 5` signal from the first node stopped at the second: nobody
further down knew the first node's key. Here every node follows the roster file published by the
stewards (two of three must sign, with `signet roster approve`), so the signal and its
retraction travel the whole chain, and removing a member is one roster change after which its
records are refused everywhere. The last node reads a stale copy of the roster and catches up
from its neighbour (`/v1/roster`)."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.node_proc import SIGNET
from tests.e2e.test_federation_e2e import Proc, key, matches, nodes, wait_for

pytestmark = pytest.mark.e2e

MD5 = "c0" * 16


def _steward(tmp_path: Path, i: int) -> dict[str, str]:
    """A steward's own data dir (its key and log), not a running node."""
    data = tmp_path / f"steward{i}" / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env |= {"SIGNET_ORIGIN": f"steward{i}.test", "SIGNET_DATA_DIR": str(data)}
    _cli(env, "db", "upgrade")  # creates the steward's key and log; no server needed
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    r = subprocess.run([SIGNET, *args], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"signet {' '.join(args)}: {r.stderr}"
    return r.stdout


def _roster_version(p: Proc) -> int | None:
    r = httpx.get(p.url + "/v1/roster", timeout=5)
    return int(r.json()["signed"]["version"]) if r.status_code == 200 else None


def test_six_node_chain_from_one_roster(tmp_path: Path) -> None:
    stewards = [_steward(tmp_path, i) for i in range(3)]
    steward_keys = [_cli(env, "key", "show").strip() for env in stewards]
    published = tmp_path / "roster.json"  # the stewards' history file, what members follow
    stale = tmp_path / "mirror.json"  # an outdated mirror the last node is pointed at
    origins = [f"n{i}.test" for i in range(1, 7)]
    common = {
        "SIGNET_ROSTER_STEWARDS": ",".join(steward_keys),
        "SIGNET_ROSTER_THRESHOLD": "2",
        "SIGNET_ROSTER_REFRESH": "1",
        "SIGNET_SYNC_INTERVAL": "2",
    }
    with nodes(tmp_path, *origins, **common) as chain:
        for p in chain:
            p.env["SIGNET_ROSTER_URL"] = str(stale if p is chain[-1] else published)
            p.start()
        vkeys = {p.origin: p.cli("key", "show").stdout.strip() for p in chain}
        for left, right in itertools.pairwise(chain):
            left.cli("peers", "add", right.url, "--key", vkeys[right.origin])
            right.cli("peers", "add", left.url, "--key", vkeys[left.origin])

        draft = tmp_path / "v1.json"
        members: list[str] = []
        for p in chain:
            members += ["--member", f"{vkeys[p.origin]}={p.url}"]
        stewards_args: list[str] = []
        for k in steward_keys:
            stewards_args += ["--steward", k]
        _cli(
            stewards[0],
            "roster",
            "init",
            "--federation",
            "chain.test",
            *stewards_args,
            "--threshold",
            "2",
            *members,
            "--out",
            str(draft),
        )
        _cli(stewards[0], "roster", "approve", str(draft))
        _cli(stewards[2], "roster", "approve", str(draft))
        _cli(stewards[0], "roster", "publish", str(published), str(draft))
        stale.write_text(published.read_text())
        for p in chain:
            wait_for(lambda p=p: _roster_version(p) == 1, 30)
        # A roster approved by the stewards is in their logs.
        with sqlite3.connect(Path(stewards[2]["SIGNET_DATA_DIR"]) / "signet.db") as db:
            kinds = [k for (k,) in db.execute("SELECT kind FROM log_entry")]
        assert "roster.approved" in kinds

        auth = {p.origin: key(p, "submit,match,read") for p in chain}
        first, last = chain[0], chain[-1]
        r = httpx.post(
            first.url + "/v1/signals",
            headers=auth[first.origin],
            json={
                "signals": [
                    {
                        "type": "md5",
                        "value": MD5,
                        "categories": ["csam"],
                        "audience": {"tlp": "green", "hops": 5},
                    }
                ]
            },
        )
        r.raise_for_status()
        sid = r.json()["items"][0]["id"]
        wait_for(lambda: bool(matches(last, auth[last.origin], "md5", MD5)), 60)
        httpx.post(
            first.url + f"/v1/signals/{sid}/retract",
            headers=auth[first.origin],
            json={"reason": "test"},
        ).raise_for_status()
        wait_for(lambda: matches(last, auth[last.origin], "md5", MD5) == [], 60)

        # Removing n1 is one roster change. The last node's mirror stays at version 1: it learns
        # version 2 from its neighbour.
        draft2 = tmp_path / "v2.json"
        _cli(
            stewards[1],
            "roster",
            "propose",
            str(published),
            "--remove",
            first.origin,
            "--out",
            str(draft2),
        )
        _cli(stewards[1], "roster", "approve", str(draft2))
        _cli(stewards[2], "roster", "approve", str(draft2))
        _cli(stewards[1], "roster", "publish", str(published), str(draft2))
        for p in chain:
            wait_for(lambda p=p: _roster_version(p) == 2, 60)
        second = chain[1]
        r = httpx.post(
            first.url + "/v1/signals",
            headers=auth[first.origin],
            json={
                "signals": [
                    {
                        "type": "md5",
                        "value": "c1" * 16,
                        "categories": ["csam"],
                        "audience": {"tlp": "green", "hops": 5},
                    }
                ]
            },
        )
        r.raise_for_status()
        second.cli("sync")
        assert matches(second, auth[second.origin], "md5", "c1" * 16) == []
        admin = key(second, "admin")
        peers: list[dict[str, Any]] = httpx.get(
            second.url + "/v1/admin/peers", headers=admin
        ).json()
        removed = next(p for p in peers if p["origin"] == first.origin)
        assert removed["roster_status"] == "removed" and removed["records_refused"] >= 1
        status = httpx.get(second.url + "/v1/admin/roster", headers=admin).json()
        assert status["version"] == 2 and status["equivocations"] == []
        assert json.loads(published.read_text())[-1]["signed"]["version"] == 2
