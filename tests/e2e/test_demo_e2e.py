"""`signet demo`, as the README tells a new user to run it: three real nodes federate, every log
is audited and reconciled, and both receivers show an `applied` receipt for the retraction."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.e2e.node_proc import SIGNET

pytestmark = pytest.mark.e2e


def test_signet_demo_runs_end_to_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env["COLUMNS"] = "200"  # one line per result, whatever rich thinks the terminal is
    r = subprocess.run([SIGNET, "demo"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "Demo complete" in r.stdout
    assert "MISMATCH" not in r.stdout and "MISSING" not in r.stdout
    receipts = [line for line in r.stdout.splitlines() if ": applied at " in line]
    assert {line.split(":")[0].strip() for line in receipts} == {"platform-b.demo", "ngo.demo"}
