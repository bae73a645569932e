"""Provable withdrawal across three real nodes: `signet audit reconcile` shows each receiver's
`applied` receipt for a retraction and an expiry, with inclusion proofs; a receiver that was
down when the retraction was issued shows as missing, then as applied (later) once it caught
up."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_federation_e2e import (
    PDQ,
    Proc,
    key,
    matches,
    nodes,
    start_and_mesh,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _reconcile(nodes_: list[Proc], vkeys: dict[str, str], audit: dict[str, str]) -> Any:
    args = ["audit", "reconcile", *(p.url for p in nodes_), "--grace", "0"]
    for p in nodes_:
        args += ["--key", vkeys[p.origin], "--token", audit[p.origin]]
    r = nodes_[0].cli(*args, check=False)
    out = json.loads(r.stdout)
    return r.returncode, out, r.stderr


def _holders(report: Any, action: str) -> dict[str, dict[str, Any]]:
    (w,) = [w for w in report["withdrawals"] if w["action"] == action]
    return {h["node"]: h for h in w["holders"]}


def test_reconcile_shows_retraction_and_expiry_receipts_across_three_nodes(
    tmp_path: Path,
) -> None:
    with nodes(
        tmp_path, "a.test", "b.test", "c.test", SIGNET_SYNC_INTERVAL="1", SIGNET_EXPIRE_INTERVAL="1"
    ) as (a, b, c):
        everyone = [a, b, c]
        vkeys = start_and_mesh(*everyone)
        auth = {p.origin: key(p, "submit,match,read") for p in everyone}
        audit = {p.origin: key(p, "audit")["Authorization"][7:] for p in everyone}

        until = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
        md5 = "cd" * 16
        r = httpx.post(
            a.url + "/v1/signals",
            headers=auth[a.origin],
            json={
                "signals": [
                    {"type": "pdq", "value": PDQ, "quality": 100, "categories": ["csam"]},
                    {
                        "type": "md5",
                        "value": md5,
                        "categories": ["csam"],
                        "valid_until": until.isoformat().replace("+00:00", "Z"),
                    },
                ]
            },
        )
        r.raise_for_status()
        sid = r.json()["items"][0]["id"]
        for p in (b, c):
            wait_for(lambda p=p: bool(matches(p, auth[p.origin], "pdq", PDQ)))
            wait_for(lambda p=p: bool(matches(p, auth[p.origin], "md5", md5)))

        c.stop()  # c is down when the retraction is issued
        httpx.post(
            a.url + f"/v1/signals/{sid}/retract", headers=auth[a.origin], json={"reason": "error"}
        ).raise_for_status()
        wait_for(lambda: matches(b, auth[b.origin], "pdq", PDQ) == [])
        time.sleep(2.5)  # checkpoints (every 1 s) cover b's receipt and a's delivery

        code, report, err = _reconcile([a, b], vkeys, audit)
        held = _holders(report, "retraction")
        assert held["b.test"]["status"] == "applied", err
        assert held["c.test"]["status"] == "not audited"  # a's log says it delivered to c
        evidence = held["b.test"]["evidence"]
        assert evidence["log"] == "b.test" and evidence["entry"]["kind"] == "applied"
        assert evidence["proof"] and evidence["size"] > evidence["index"]

        c.start()  # c catches up (the pull loop runs every second)
        wait_for(lambda: matches(c, auth[c.origin], "pdq", PDQ) == [], 30)
        # Expiry: b and c mark the md5 expired in their next expiry round after valid_until.
        while datetime.now(UTC) <= until + timedelta(seconds=3):
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while True:
            code, report, err = _reconcile(everyone, vkeys, audit)
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert code == 0 and report["ok"], err
        held = _holders(report, "retraction")
        assert {n: h["status"] for n, h in held.items()} == {
            "b.test": "applied",
            "c.test": "applied",
        }
        assert held["c.test"]["time"] > held["b.test"]["time"]  # c applied it after coming back
        expired = _holders(report, "expiry")
        assert {n: h["status"] for n, h in expired.items()} == {
            "b.test": "applied",
            "c.test": "applied",
        }
        assert "applied" in err and "proof checked" in err

        # The conformance suite's receipt check passes on a receiver that applied both.
        r = c.cli("conformance", c.url, "--key", vkeys[c.origin], "--token", audit[c.origin])
        (line,) = [x for x in r.stdout.splitlines() if "LOG-6" in x]
        assert line.startswith("pass") and "1 retraction(s)" in line, line
