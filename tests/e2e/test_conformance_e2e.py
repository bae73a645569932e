"""`signet conformance` against live nodes: a correct node passes every check; a node whose log
holds a signal in a non-canonical form fails, naming §4 and SIG-1; one whose cursor does not
advance (a proxy rewrites its pages) fails naming §7 SYNC-1; one that applied a peer's
retraction without logging a receipt fails naming §6 LOG-6."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.crypto.keys import NodeKey
from app.crypto.records import sign_record
from app.services.node import open_node
from app.services.tx import transaction
from app.settings import load_settings
from tests.e2e.node_proc import SIGNET, NodeProc, free_port, running_node
from tests.signal_bodies import signal_body

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


def _pin(a: NodeProc, b: NodeProc) -> str:
    """a pins b; a's verifier key."""
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
    return vkey_a


def test_conformance_passes_on_a_node_and_names_a_broken_canonical_form(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_node(tmp_path / "a", origin="a.example") as a,
        running_node(tmp_path / "b", origin="b.example") as b,
    ):
        vkey_a = _pin(a, b)
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
        names = {c["name"] for c in report["checks"]}
        assert {
            "requests outside the time window are refused",
            "notify: accepted from the signer, refused naming another origin",
            "every withdrawal applied from a peer has an `applied` receipt",
        } <= names

        # Without credentials the log and sync checks are not applicable, not failed.
        bare = json.loads(_conformance(a.url, "--key", vkey_a).stdout)
        assert {c["status"] for c in bare["checks"]} == {"pass", "n/a"}

        # A node that signs and logs a PDQ in upper case (not its canonical form).
        settings = load_settings(
            origin="a.example", data_dir=Path(a.env["SIGNET_DATA_DIR"]), background=False
        )
        node = open_node(settings, migrate=False)
        try:
            body = signal_body(
                id="01jq00000000000000000000zz",
                type="pdq",
                value=PDQ,
                attrs={"quality": 90},
                valid_until="2099-01-01T00:00:00Z",
            )
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


@contextmanager
def _cursor_proxy(port: int, upstream: str) -> Iterator[dict[str, bool]]:
    """A reverse proxy on `port` in front of `upstream` (the node's public URL points here).
    With `broken["cursor"]` set it rewrites sync pages so that `next` never moves past `after`:
    a node with a wrong cursor, as a peer sees it."""
    broken = {"cursor": False}

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
            r = httpx.request(
                self.command, upstream + self.path, headers=headers, content=body, timeout=30
            )
            content = r.content
            if broken["cursor"] and self.path.startswith("/federation/v1/records"):
                page = json.loads(content)
                after = int(parse_qs(urlsplit(self.path).query)["after"][0])
                if page.get("has_more"):
                    page["next"] = after
                content = json.dumps(page).encode()
            self.send_response(r.status_code)
            for name, value in r.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _forward

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield broken
    finally:
        server.shutdown()
        server.server_close()


def _failures(report: dict[str, object]) -> list[dict[str, str]]:
    return [c for c in report["checks"] if c["status"] == "fail"]  # type: ignore[union-attr,index]


def test_conformance_names_a_wrong_cursor_and_a_missing_receipt(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    proxy_port = free_port()
    public = f"http://127.0.0.1:{proxy_port}"
    with (
        running_node(
            tmp_path / "a", origin="a.example", extra_env={"SIGNET_PUBLIC_URL": public}
        ) as a,
        running_node(tmp_path / "b", origin="b.example") as b,
        _cursor_proxy(proxy_port, a.url) as broken,
    ):
        vkey_a = _pin(a, b)
        platform = a.create_key("submit,read")
        audit = a.create_key("audit")
        signals = [{"type": "md5", "value": f"{i:032x}", "categories": ["csam"]} for i in range(8)]
        httpx.post(
            a.url + "/v1/signals",
            json={"signals": signals},
            headers={"Authorization": f"Bearer {platform}"},
        ).raise_for_status()
        admin = {"Authorization": f"Bearer {a.create_key('admin')}"}
        httpx.post(a.url + "/v1/log/checkpoint", headers=admin).raise_for_status()
        as_peer = ["--as-peer", str(Path(b.env["SIGNET_DATA_DIR"]) / "node.key")]
        as_peer += ["--as-origin", "b.example"]

        # Through the proxy, untouched, the node passes: the proxy itself changes nothing.
        honest = json.loads(
            _conformance(public, "--key", vkey_a, "--token", audit, *as_peer).stdout
        )
        assert honest["ok"] and not _failures(honest), _failures(honest)

        broken["cursor"] = True
        wrong = _conformance(public, "--key", vkey_a, *as_peer)
        report = json.loads(wrong.stdout)
        assert wrong.returncode == 1
        (bad,) = _failures(report)
        assert bad["section"].startswith("7") and "SYNC-1" in bad["requirement"]
        assert "cursor" in bad["detail"]
        broken["cursor"] = False

        # A node that applied a peer's retraction without logging the `applied` receipt.
        peer = NodeKey.generate()
        retraction = sign_record(
            {
                "kind": "retraction",
                "v": 1,
                "signal": {"origin": "x.example", "id": "01jq00000000000000000000zz", "version": 1},
                "reason": "error",
                "time": "2026-01-01T00:00:00Z",
            },
            peer,
            "x.example",
        )
        settings = load_settings(
            origin="a.example", data_dir=Path(a.env["SIGNET_DATA_DIR"]), background=False
        )
        node = open_node(settings, migrate=False)
        try:
            with transaction(node) as tx:
                tx.append_record("received", retraction, "green", **{"from": "x.example"})
        finally:
            node.db.dispose()
        httpx.post(a.url + "/v1/log/checkpoint", headers=admin).raise_for_status()
        missing = _conformance(public, "--key", vkey_a, "--token", audit)
        report = json.loads(missing.stdout)
        assert missing.returncode == 1
        (bad,) = _failures(report)
        assert bad["section"].startswith("6") and "LOG-6" in bad["requirement"]
        assert "no `applied` receipt" in bad["detail"]
