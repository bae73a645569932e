"""Three real `signet serve` processes on loopback doing the README walkthrough, and a receiver
killed with SIGKILL in the middle of a large pull."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.node_proc import SIGNET, free_port

pytestmark = pytest.mark.e2e

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


@dataclass
class Proc:
    origin: str
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [SIGNET, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and r.returncode != 0:
            raise AssertionError(f"signet {' '.join(args)}: {r.returncode}\n{r.stderr}")
        return r

    def start(self) -> None:
        path = Path(self.env["SIGNET_DATA_DIR"]).parent / f"{self.origin}.log"
        with path.open("ab") as log:
            self.proc = subprocess.Popen(
                [SIGNET, "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: httpx.get(self.url + "/healthz", timeout=1).status_code == 200, 30)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(Path(self.env["SIGNET_DATA_DIR"]) / "signet.db", timeout=30)


def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, sqlite3.Error):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@contextmanager
def nodes(tmp_path: Path, *origins: str, **extra: str) -> Iterator[list[Proc]]:
    procs = []
    for origin in origins:
        port = free_port()
        env = {
            **os.environ,
            "SIGNET_ORIGIN": origin,
            "SIGNET_DATA_DIR": str(tmp_path / origin / "data"),
            "SIGNET_PORT": str(port),
            "SIGNET_HOST": "127.0.0.1",
            "SIGNET_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SIGNET_LOG_LEVEL": "warning",
            "SIGNET_CHECKPOINT_INTERVAL": "1",
            "SIGNET_SYNC_INTERVAL": "5",
            **extra,
        }
        for name in ("SIGNET_DATABASE_URL", "SIGNET_URL", "SIGNET_API_KEY"):
            env.pop(name, None)
        (tmp_path / origin).mkdir()
        procs.append(Proc(origin, f"http://127.0.0.1:{port}", env))
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def start_and_mesh(*procs: Proc) -> dict[str, str]:
    """Start every node and pin every node's key at every other; their verifier keys."""
    for p in procs:
        p.start()
    vkeys = {p.origin: p.cli("key", "show").stdout.strip() for p in procs}
    for p in procs:
        for q in procs:
            if p is not q:
                p.cli("peers", "add", q.url, "--key", vkeys[q.origin])
    return vkeys


def key(p: Proc, scopes: str) -> dict[str, str]:
    return {
        "Authorization": "Bearer "
        + p.cli("api-keys", "create", "--name", "t", "--scopes", scopes).stdout.strip()
    }


def matches(p: Proc, auth: dict[str, str], type_: str, value: str) -> list[Any]:
    r = httpx.post(
        p.url + "/v1/match", headers=auth, json={"queries": [{"type": type_, "value": value}]}
    )
    r.raise_for_status()
    return list(r.json()["results"][0]["matches"])


def test_three_nodes_walkthrough(tmp_path: Path) -> None:
    with nodes(tmp_path, "platform-a.test", "platform-b.test", "ngo.test") as (a, b, ngo):
        everyone = (a, b, ngo)
        vkeys = start_and_mesh(*everyone)
        # A key that is not the one the URL serves is refused.
        bad = a.cli("peers", "add", b.url, "--key", vkeys[ngo.origin], check=False)
        assert bad.returncode != 0 and "does not verify" in bad.stderr
        auth = {p.origin: key(p, "submit,match,read,feedback") for p in everyone}
        audit = {p.origin: key(p, "audit") for p in everyone}

        r = httpx.post(
            a.url + "/v1/signals",
            headers=auth[a.origin],
            json={
                "signals": [
                    {"type": "pdq", "value": PDQ, "quality": 100, "categories": ["csam"]},
                    {
                        "type": "md5",
                        "value": "ab" * 16,
                        "categories": ["sextortion"],
                        "audience": {"tlp": "amber", "peers": ["platform-b.test"]},
                    },
                ]
            },
        )
        r.raise_for_status()
        sid = r.json()["items"][0]["id"]
        for p in (b, ngo):
            wait_for(lambda p=p: bool(matches(p, auth[p.origin], "pdq", PDQ)))
        wait_for(lambda: bool(matches(b, auth[b.origin], "md5", "ab" * 16)))
        ngo.cli("sync")
        assert matches(ngo, auth[ngo.origin], "md5", "ab" * 16) == []

        httpx.post(
            a.url + f"/v1/signals/{sid}/retract", headers=auth[a.origin], json={"reason": "test"}
        ).raise_for_status()
        for p in everyone:
            wait_for(lambda p=p: matches(p, auth[p.origin], "pdq", PDQ) == [])

        # Peer status in the admin API.
        admin = key(b, "admin")
        status = httpx.get(b.url + "/v1/admin/peers", headers=admin).json()
        assert {s["origin"] for s in status} == {"platform-a.test", "ngo.test"}
        assert all(s["last_error"] is None for s in status)

        for p in everyone:
            others = [q for q in everyone if q is not p]
            args = [
                "audit",
                "verify",
                p.url,
                "--key",
                vkeys[p.origin],
                "--token",
                audit[p.origin]["Authorization"][7:],
                "--quorum",
                "2",
            ]
            for q in others:
                args += ["--witness", vkeys[q.origin], "--peer-key", vkeys[q.origin]]
            r = p.cli(*args, check=False)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["ok"] is True
        r = a.cli(
            "audit",
            "reconcile",
            a.url,
            b.url,
            "--key-a",
            vkeys[a.origin],
            "--key-b",
            vkeys[b.origin],
            "--token-a",
            audit[a.origin]["Authorization"][7:],
            "--token-b",
            audit[b.origin]["Authorization"][7:],
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ok"] is True


def test_receiver_killed_mid_pull_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    total = 6000
    with nodes(tmp_path, "src.test", "dst.test", SIGNET_SYNC_INTERVAL="3600") as (src, dst):
        src.start()
        dst.start()
        src.cli("peers", "add", dst.url, "--key", dst.cli("key", "show").stdout.strip())
        auth = key(src, "submit")
        for start in range(0, total, 1000):
            batch = [
                {"type": "md5", "value": f"{i:032x}", "categories": ["csam"]}
                for i in range(start, start + 1000)
            ]
            httpx.post(
                src.url + "/v1/signals", headers=auth, json={"signals": batch}, timeout=60
            ).raise_for_status()
        # The receiver pins the source only now, stopped: it pulls with `signet sync`.
        dst.stop()
        dst.cli("peers", "add", src.url, "--key", src.cli("key", "show").stdout.strip())

        def count() -> int:
            with contextlib.closing(dst.db()) as conn:
                return int(conn.execute("SELECT count(*) FROM signal").fetchone()[0])

        sync = subprocess.Popen(
            [SIGNET, "sync", "src.test"],
            env=dst.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while count() == 0 and time.monotonic() < deadline and sync.poll() is None:
                time.sleep(0.005)
            sync.send_signal(signal.SIGKILL)
        finally:
            sync.wait(timeout=10)
        partial = count()
        assert partial < total, "the pull finished before it could be killed; raise `total`"

        dst.cli("sync", "src.test")
        with contextlib.closing(dst.db()) as conn:
            assert conn.execute("SELECT count(*) FROM signal").fetchone()[0] == total
            assert conn.execute("SELECT count(DISTINCT uid) FROM signal").fetchone()[0] == total
            # Green signals: each signal row is its own receipt (app/services/sync.py).
            assert conn.execute("SELECT count(*) FROM received_record").fetchone()[0] == 0
            received = conn.execute(
                "SELECT count(*) FROM log_entry WHERE kind = 'received'"
            ).fetchone()[0]
            assert received == total
        # Restarted as a server, its log still verifies.
        dst.start()
        admin = key(dst, "audit")
        r = dst.cli(
            "audit",
            "verify",
            dst.url,
            "--key",
            dst.cli("key", "show").stdout.strip(),
            "--token",
            admin["Authorization"][7:],
            check=False,
        )
        assert r.returncode == 0, r.stderr
