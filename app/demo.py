"""`signet demo`: a federation of three nodes on one laptop, narrated step by step.

Starts `signet serve` three times on loopback (SQLite in temporary directories): two platforms
and an NGO. Pins their keys to each other, submits signals on one platform, shows them matching
on the other nodes, keeps an amber signal from the node it does not name, retracts a signal and
shows it stop matching everywhere, then audits all three logs with their peers' cosignatures
and reconciles what was delivered with what was received. Cleans up after itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

NODES = (
    ("platform-a.demo", "a video platform"),
    ("platform-b.demo", "a messaging platform"),
    ("ngo.demo", "a child-protection NGO"),
)
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
AMBER_MD5 = "5eb63bbbe01eeed093cb22bb8f5acdc3"


@dataclass
class DemoNode:
    origin: str
    role: str
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    verifier_key: str = ""
    admin: str = ""
    platform: str = ""
    audit: str = ""

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signet() -> str:
    exe = Path(sys.executable).parent / "signet"
    return str(exe) if exe.exists() else "signet"


def node_env(root: Path, origin: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a demo node on loopback, its data under `root/origin` (SQLite)."""
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "SIGNET_ORIGIN": origin,
        "SIGNET_DATA_DIR": str(root / origin),
        "SIGNET_HOST": "127.0.0.1",
        "SIGNET_PORT": str(port),
        "SIGNET_PUBLIC_URL": url,
        "SIGNET_LOG_LEVEL": "warning",
        **extra,
    }
    for name in ("SIGNET_DATABASE_URL", "SIGNET_URL", "SIGNET_API_KEY"):
        env.pop(name, None)
    return env


def start_serve(root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`signet serve` in its own process group, its output in `root/<origin>.log`."""
    with (root / f"{env['SIGNET_ORIGIN']}.log").open("wb") as log:
        return subprocess.Popen(  # noqa: S603  (our own CLI, fixed arguments)
            [_signet(), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_all(procs: Iterable[subprocess.Popen[bytes] | None]) -> None:
    """SIGTERM every process group, then wait; SIGKILL what does not stop within 10 s."""
    running = [p for p in procs if p is not None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def _nodes(root: Path) -> Iterator[list[DemoNode]]:
    nodes: list[DemoNode] = []
    try:
        for origin, role in NODES:
            port = _free_port()
            env = node_env(
                root, origin, port, SIGNET_SYNC_INTERVAL="5", SIGNET_CHECKPOINT_INTERVAL="1"
            )
            url = env["SIGNET_PUBLIC_URL"]
            nodes.append(DemoNode(origin, role, url, env, start_serve(root, env)))
        yield nodes
    finally:
        stop_all(n.proc for n in nodes)


def _wait(what: str, check: Callable[[], bool], timeout: float = 20.0) -> float:
    """Seconds until `check()` held; raises if it never did."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _keys(node: DemoNode) -> None:
    """API keys, made directly in the node's database (what `signet api-keys create` does)."""
    from app.services import apikeys
    from app.services.node import open_node
    from app.settings import load_settings

    settings = load_settings(
        origin=node.origin,
        data_dir=Path(node.env["SIGNET_DATA_DIR"]),
        port=int(node.env["SIGNET_PORT"]),
    )
    n = open_node(settings)
    try:
        node.verifier_key = n.verifier_key
        node.admin = apikeys.create(n, "demo-admin", ["admin"]).key
        node.platform = apikeys.create(
            n, "demo-platform", ["submit", "match", "read", "feedback"]
        ).key
        node.audit = apikeys.create(n, "demo-auditor", ["audit"]).key
    finally:
        n.db.dispose()


def _matches(http: httpx.Client, node: DemoNode, type_: str, value: str) -> list[dict[str, Any]]:
    r = http.post(
        node.url + "/v1/match",
        headers=node.headers(node.platform),
        json={"queries": [{"type": type_, "value": value}]},
    )
    r.raise_for_status()
    return list(r.json()["results"][0]["matches"])


def _up(http: httpx.Client, node: DemoNode) -> bool:
    return http.get(node.url + "/healthz").is_success


def _has_match(http: httpx.Client, node: DemoNode, pdq: str) -> bool:
    return bool(_matches(http, node, "pdq", pdq))


def _no_match(http: httpx.Client, node: DemoNode, pdq: str) -> bool:
    return not _matches(http, node, "pdq", pdq)


def run_demo(console: Console, *, keep: bool = False) -> int:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="signet-demo-"))
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"\n[bold cyan]{step}.[/bold cyan] {text}")

    try:
        with _nodes(root) as nodes, httpx.Client(timeout=10) as http:
            a, b, ngo = nodes
            say("Starting three nodes on loopback, each with its own SQLite database")
            for n in nodes:
                _wait(f"{n.origin} to start", partial(_up, http, n))
                _keys(n)
                console.print(f"   {n.origin:16} {n.role:28} {n.url}")
                console.print(f"   [dim]verifier key {n.verifier_key}[/dim]")

            say(
                "Each operator pins the other two nodes' verifier keys "
                "(checked against /.well-known/signet)"
            )
            for n in nodes:
                for p in nodes:
                    if p is n:
                        continue
                    r = http.post(
                        n.url + "/v1/admin/peers",
                        headers=n.headers(n.admin),
                        json={"url": p.url, "verifier_key": p.verifier_key},
                    )
                    r.raise_for_status()
                console.print(
                    f"   {n.origin} pinned {', '.join(p.origin for p in nodes if p is not n)}"
                )
            r = http.post(
                a.url + "/v1/admin/peers",
                headers=a.headers(a.admin),
                json={"url": b.url, "verifier_key": ngo.verifier_key},
            )
            console.print(
                f"   a key that does not match the node at the URL is refused: HTTP {r.status_code}"
            )

            say(
                f"{a.origin} submits a PDQ hash (TLP:GREEN) "
                f"and an MD5 for {b.origin} only (TLP:AMBER)"
            )
            r = http.post(
                a.url + "/v1/signals",
                headers=a.headers(a.platform),
                json={
                    "signals": [
                        {
                            "type": "pdq",
                            "value": PDQ,
                            "quality": 100,
                            "categories": ["csam"],
                            "opinion": "positive",
                            "reviewed": True,
                        },
                        {
                            "type": "md5",
                            "value": AMBER_MD5,
                            "categories": ["sextortion"],
                            "audience": {"tlp": "amber", "peers": [b.origin]},
                        },
                    ]
                },
            )
            r.raise_for_status()
            pdq_id = r.json()["items"][0]["id"]
            console.print(f"   signal {pdq_id} published; peers are notified and pull at once")

            say("An upload on the other nodes is matched against it (a near-duplicate, 6 bits off)")
            near = f"{int(PDQ, 16) ^ 0b111111:064x}"
            for n in (b, ngo):
                took = _wait(f"the PDQ at {n.origin}", partial(_has_match, http, n, near))
                hit = _matches(http, n, "pdq", near)[0]
                console.print(
                    f"   {n.origin}: match from {hit['origin']} at distance {hit['distance']} "
                    f"({took:.2f} s after submit)"
                )

            say(f"The amber MD5 reaches {b.origin} and never {ngo.origin}")
            _wait("the amber signal", lambda: bool(_matches(http, b, "md5", AMBER_MD5)))
            http.post(ngo.url + f"/v1/admin/peers/{a.origin}/sync", headers=ngo.headers(ngo.admin))
            http.post(ngo.url + f"/v1/admin/peers/{b.origin}/sync", headers=ngo.headers(ngo.admin))
            console.print(f"   {b.origin}: {len(_matches(http, b, 'md5', AMBER_MD5))} match")
            console.print(
                f"   {ngo.origin}: {len(_matches(http, ngo, 'md5', AMBER_MD5))} matches "
                "(after pulling from both other nodes)"
            )

            say(f"{b.origin} confirms the PDQ match; the verdict flows back to {a.origin}")
            r = http.post(
                b.url + "/v1/feedback",
                headers=b.headers(b.platform),
                json={"signal": pdq_id, "origin": a.origin, "verdict": "true_positive"},
            )
            r.raise_for_status()

            def confirmed() -> bool:
                s = http.get(a.url + f"/v1/signals/{pdq_id}", headers=a.headers(a.platform))
                return bool(s.json().get("feedback_status") == "confirmed")

            _wait("the verdict at the origin", confirmed)
            console.print(f"   {a.origin} now shows the signal as [green]confirmed[/green]")

            say(f"{a.origin} retracts the PDQ signal; it stops matching everywhere")
            t0 = time.monotonic()
            http.post(
                a.url + f"/v1/signals/{pdq_id}/retract",
                headers=a.headers(a.platform),
                json={"reason": "demo: withdrawn"},
            ).raise_for_status()
            for n in nodes:
                _wait(f"the retraction at {n.origin}", partial(_no_match, http, n, near))
                console.print(
                    f"   {n.origin}: no match ({time.monotonic() - t0:.2f} s after retract)"
                )

            say("Every node's log is audited, with its checkpoint cosigned by both peers")
            from app.audit.errors import AuditFailed
            from app.audit.federation import check_quorum, witness_key
            from app.audit.run import audit_node
            from app.crypto.keys import VerifierKey

            for n in nodes:
                http.post(n.url + "/v1/log/checkpoint", headers=n.headers(n.admin))
            for n in nodes:
                pinned = VerifierKey.parse(n.verifier_key)
                others = [p for p in nodes if p is not n]
                peers = [VerifierKey.parse(p.verifier_key) for p in others]
                witnesses = [witness_key(p.verifier_key) for p in others]

                def witnessed(
                    n: DemoNode = n,
                    pinned: VerifierKey = pinned,
                    witnesses: list[VerifierKey] = witnesses,
                ) -> bool:
                    note = http.get(n.url + "/federation/v1/checkpoint").text
                    try:
                        check_quorum(note, pinned, witnesses, 2)
                    except AuditFailed:
                        return False
                    return True

                _wait(f"cosignatures of {n.origin}", witnessed)
                report = audit_node(n.url, n.audit, pinned, peer_keys=peers)
                note = http.get(
                    n.url + "/v1/log/checkpoint",
                    params={"size": report.size},
                    headers=n.headers(n.audit),
                ).text
                valid = check_quorum(note, pinned, witnesses, 1)
                kinds = ", ".join(f"{c} {k}" for k, c in sorted(report.kinds.items()))
                console.print(
                    f"   [green]OK[/green] {n.origin}: {report.size} entries verified ({kinds}); "
                    f"cosigned by {', '.join(c.name for c in valid)}"
                )

            say(
                "Reconcile all three logs: every delivery against its receipt, and who "
                "applied the retraction (each receipt with an inclusion proof)"
            )
            from datetime import timedelta

            from app.audit.reconcile import NodeSpec, reconcile_nodes

            result = reconcile_nodes(
                [NodeSpec(n.url, n.audit, VerifierKey.parse(n.verifier_key)) for n in nodes],
                grace=timedelta(0),
            )
            for pair in result.pairs:
                for d in pair.directions:
                    if not (d.delivered or d.received):
                        continue
                    mark = "[green]OK[/green]" if d.ok else "[red]MISMATCH[/red]"
                    console.print(
                        f"   {mark} {d.sender} -> {d.receiver}: {d.delivered} delivered, "
                        f"{d.received} received, {d.held_from_elsewhere} already held via "
                        "another peer"
                    )
            for w in result.withdrawals:
                mark = "[green]OK[/green]" if w.ok else "[red]MISSING[/red]"
                console.print(f"   {mark} {w.action} of {w.origin}/{w.signal_id}:")
                for h in w.holders:
                    at = f" at {h.time}, log entry {h.evidence.index}" if h.evidence else ""
                    console.print(f"      {h.node}: {h.status}{at}")
            console.print(
                f"\n[bold green]Demo complete[/bold green] in {time.monotonic() - started:.1f} s."
            )
            return 0 if result.ok else 1
    except (RuntimeError, httpx.HTTPError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        for log in sorted(root.glob("*.log")):
            tail = log.read_text(errors="replace")[-1500:]
            if tail.strip():
                console.print(f"[dim]--- {log.name}\n{tail}[/dim]")
        return 1
    finally:
        if keep:
            console.print(f"[dim]data kept in {root}[/dim]")
        else:
            shutil.rmtree(root, ignore_errors=True)
