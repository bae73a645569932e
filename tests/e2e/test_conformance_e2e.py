"""`signet conformance` against live nodes: a correct node passes every check; a node whose log
holds a signal in a non-canonical form fails, naming §4 and SIG-1."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from app.crypto.records import sign_record
from app.services.node import open_node
from app.services.tx import transaction
from app.settings import load_settings
from tests.e2e.node_proc import SIGNET, running_node

pytestmark = pytest.mark.e2e

PDQ = "F8F8F0CEE0F4A84F06370A22038F63F0B36E2ED596621E1D33E6B39C4E9C9B22"


def _conformance(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    return subprocess.run(
        [SIGNET, "conformance", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_conformance_passes_on_a_node_and_names_a_broken_canonical_form(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_node(tmp_path / "a", origin="a.example") as a,
        running_node(tmp_path / "b", origin="b.example") as b,
    ):
        vkey_a = a.signet("key", "show", key="").stdout.strip()
        vkey_b = b.signet("key", "show", key="").stdout.strip()
        r = subprocess.run(
            [SIGNET, "peers", "add", b.url, "--key", vkey_b],
            env=a.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        platform = a.create_key("submit,read")
        audit = a.create_key("audit")
        signals = [
            {"type": "pdq", "value": PDQ, "quality": 90, "categories": ["csam"]},
            {
                "type": "md5",
                "value": "AB" * 16,
                "categories": ["ncii"],
                "audience": {"tlp": "amber", "peers": ["b.example"]},
            },
            {
                "type": "domain",
                "value": "Bad.Example.",
                "categories": ["grooming"],
                "audience": {"tlp": "red"},
            },
        ]
        httpx.post(
            a.url + "/v1/signals",
            json={"signals": signals},
            headers={"Authorization": f"Bearer {platform}"},
        ).raise_for_status()
        httpx.post(
            a.url + "/v1/log/checkpoint",
            headers={"Authorization": f"Bearer {a.create_key('admin')}"},
        ).raise_for_status()
        peer_key = str(Path(b.env["SIGNET_DATA_DIR"]) / "node.key")

        ok = _conformance(
            a.url,
            "--key",
            vkey_a,
            "--token",
            audit,
            "--as-peer",
            peer_key,
            "--as-origin",
            "b.example",
        )
        report = json.loads(ok.stdout)
        failed = [c for c in report["checks"] if c["status"] != "pass"]
        assert ok.returncode == 0 and report["ok"] and not failed, failed

        # Without credentials the log and sync checks are not applicable, not failed.
        bare = json.loads(_conformance(a.url, "--key", vkey_a).stdout)
        assert {c["status"] for c in bare["checks"]} == {"pass", "n/a"}

        # A node that signs and logs a PDQ in upper case (not its canonical form).
        settings = load_settings(
            origin="a.example", data_dir=Path(a.env["SIGNET_DATA_DIR"]), background=False
        )
        node = open_node(settings, migrate=False)
        try:
            body = {
                "kind": "signal",
                "v": 1,
                "id": "01jq00000000000000000000zz",
                "version": 1,
                "type": "pdq",
                "value": PDQ,
                "attrs": {"quality": 90},
                "categories": ["csam"],
                "indicators": [],
                "opinion": "positive",
                "confidence": 50,
                "reviewed": False,
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_until": "2099-01-01T00:00:00Z",
                "audience": {"tlp": "green", "peers": [], "hops": 1},
            }
            with transaction(node) as tx:
                tx.append_record("signal", sign_record(body, node.key, node.origin), "green")
        finally:
            node.db.dispose()
        httpx.post(
            a.url + "/v1/log/checkpoint",
            headers={"Authorization": f"Bearer {a.create_key('admin')}"},
        ).raise_for_status()
        broken = _conformance(a.url, "--key", vkey_a, "--token", audit)
        report = json.loads(broken.stdout)
        assert broken.returncode == 1 and not report["ok"]
        (bad,) = [c for c in report["checks"] if c["status"] == "fail"]
        assert bad["section"].startswith("4") and "SIG-1" in bad["requirement"]
        assert "not canonical" in bad["detail"]
