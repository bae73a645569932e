"""`signet demo --oprf`: identifier matching through a threshold OPRF, narrated.

Starts five `signet serve` processes on loopback (SQLite in a temporary directory): three key
holders sharing one OPRF key 2-of-3 and two platforms' member nodes. Runs the key ceremony,
hashes one synthetic email on platform A's side through A's node, submits it, hashes the same
person's email (spelled differently) on platform B's side through B's node, and shows B's
match. Then shows what each party saw: the holders' per-member tallies, and that no node's
database holds the email. Cleans up after itself (unless `--keep`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
from rich.console import Console

from app.demo import _free_port, _signet, _wait, node_env, start_serve, stop_all

HOLDERS = ("holder-1.demo", "holder-2.demo", "holder-3.demo")
MEMBERS = ("platform-a.demo", "platform-b.demo")
EPOCH = "oprf-demo"
EMAIL_A = "Sam.Synthetic+shop@GoogleMail.com"
EMAIL_B = " sam.synthetic@gmail.com "


@dataclass
class Proc:
    origin: str
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, extra: dict[str, str] | None = None) -> str:
        r = subprocess.run(  # noqa: S603  (our own CLI, fixed arguments)
            [_signet(), *args],
            env={**self.env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            raise RuntimeError(f"signet {args[0]} {args[1] if len(args) > 1 else ''}: {r.stderr}")
        return r.stdout.strip()


def _up(http: httpx.Client, url: str) -> bool:
    return http.get(url + "/healthz", timeout=1).status_code == 200


@contextmanager
def _procs(root: Path, ceremony: Path) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        for origin in HOLDERS + MEMBERS:
            if origin in HOLDERS:
                extra = {"SIGNET_OPRF_SHARE_FILES": str(ceremony / f"{EPOCH}.{origin}.share.json")}
            else:
                extra = {"SIGNET_OPRF_EPOCH_FILES": str(ceremony / f"{EPOCH}.epoch.json")}
            env = node_env(root, origin, _free_port(), SIGNET_SYNC_INTERVAL="3", **extra)
            p = Proc(origin, env["SIGNET_PUBLIC_URL"], env)
            p.proc = start_serve(root, env)
            procs.append(p)
        yield procs
    finally:
        stop_all(p.proc for p in procs)


def run_oprf_demo(console: Console, *, keep: bool = False) -> int:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="signet-oprf-demo-"))
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"\n[bold cyan]{step}.[/bold cyan] {text}")

    ceremony = root / "ceremony"
    try:
        say("Key ceremony: one OPRF key, Shamir-shared 2-of-3 among three key holders")
        dealer = Proc("dealer", "", {**os.environ})
        args = ["identifier", "ceremony", "--epoch", EPOCH, "--threshold", "2", "--out"]
        holders_args = [x for h in HOLDERS for x in ("--holder", h)]
        for line in dealer.cli(*args, str(ceremony), *holders_args).splitlines():
            console.print(f"   [dim]{line}[/dim]")
        console.print("   each holder gets only its share file; members get the public epoch")

        with _procs(root, ceremony) as procs, httpx.Client(timeout=30) as http:
            by = {p.origin: p for p in procs}
            say("Starting three key holders and two platforms' nodes on loopback")
            for p in procs:
                _wait(f"{p.origin} to start", partial(_up, http, p.url), 90)
                console.print(f"   {p.origin:16} {p.url}")
            vkeys = {p.origin: p.cli("key", "show") for p in procs}

            say("Members pin the holders and each other; holders pin the members")
            for m in MEMBERS:
                for other in HOLDERS + MEMBERS:
                    if other != m:
                        by[m].cli("peers", "add", by[other].url, "--key", vkeys[other])
                for h in HOLDERS:
                    by[h].cli("peers", "add", by[m].url, "--key", vkeys[m])
            keys = {
                m: by[m].cli("api-keys", "create", "--name", "demo", "--scopes", "submit,match")
                for m in MEMBERS
            }

            def oprf_hash(member: str, email: str) -> dict[str, str]:
                env = {"SIGNET_URL": by[member].url, "SIGNET_API_KEY": keys[member]}
                out = by[member].cli(
                    "identifier", "hash", "--oprf", "--type", "email", "--json", email, extra=env
                )
                result: dict[str, str] = json.loads(out)
                return result

            say(f"Platform A hashes {EMAIL_A!r} on its own side, through its node")
            console.print("   blinded on A's side -> A's node -> 2 holders -> proofs checked")
            sig_a = oprf_hash("platform-a.demo", EMAIL_A)
            console.print(f"   value {sig_a['value']}  key_id {sig_a['key_id']}")
            a = by["platform-a.demo"]
            r = http.post(
                a.url + "/v1/signals",
                headers={"Authorization": f"Bearer {keys['platform-a.demo']}"},
                json={
                    "signals": [{**sig_a, "categories": ["grooming"], "audience": {"tlp": "green"}}]
                },
            )
            r.raise_for_status()
            console.print("   submitted as a green identifier signal")

            say(f"Platform B sees {EMAIL_B!r}, hashes it through its own node, and matches")
            sig_b = oprf_hash("platform-b.demo", EMAIL_B)
            console.print(f"   value {sig_b['value']}  (same value: same normalised email)")
            b = by["platform-b.demo"]

            def matched() -> bool:
                m = http.post(
                    b.url + "/v1/match",
                    headers={"Authorization": f"Bearer {keys['platform-b.demo']}"},
                    json={"queries": [sig_b]},
                )
                return bool(m.json()["results"][0]["matches"])

            secs = _wait("the signal to reach B", matched, 30)
            console.print(f"   matched at B after {secs:.1f} s (pulled from A)")

            say("What the key holders saw: blinded elements only, counted per member")
            for h in HOLDERS:
                db = root / h / "signet.db"
                with contextlib.closing(sqlite3.connect(db)) as conn:
                    rows = conn.execute(
                        "SELECT data FROM log_entry WHERE kind='oprf_tally'"
                    ).fetchall()
                tally: dict[str, int] = {}
                for (data,) in rows:
                    e = json.loads(data)
                    tally[e["member"]] = tally.get(e["member"], 0) + e["count"]
                console.print(f"   {h:16} tally in its signed log: {tally or 'none'}")

            say("No node's files (database, WAL, key) hold the email")
            needles = [b"sam.synthetic", b"samsynthetic"]
            for p in procs:
                files = [f for f in (root / p.origin).rglob("*") if f.is_file()]
                blob = b"".join(f.read_bytes() for f in files)
                found = any(n in blob.lower() for n in needles)
                console.print(f"   {p.origin:16} {'FOUND' if found else 'not found'}")
                if found:
                    return 1
        console.print(f"\n[green]done[/green] in {time.monotonic() - started:.0f} s")
        return 0
    finally:
        if keep:
            console.print(f"[dim]kept {root}[/dim]")
        else:
            shutil.rmtree(root, ignore_errors=True)
