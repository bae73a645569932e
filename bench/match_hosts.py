"""/v1/match throughput with 1 and 2 `signet serve` hosts over one PostgreSQL database.

Issue 15 asks that match throughput grow with hosts. This creates a fresh PostgreSQL database
(`signet_bench_hosts` by default, dropped at the end), loads `--signals` signals into it with
`signet import` (a generated JSON-lines file: mostly md5, `--pdq` of them PDQ), then for each
host count starts that many `signet serve` processes on their own ports. The hosts share
nothing but the database: each has its own data dir holding only a copy of the node key (as
docs/scaling.md, "Running N hosts", says to deploy them), its own index loaded from the
database, its own process group. It drives POST /v1/match on all of them at once, one `wrk` per
host with the connections split evenly (the total stays `--connections`), and prints the summed
requests/s and the worst host's p50 / p99.

Baseline, same run, same load split: a bare FastAPI app (one POST route that parses the JSON body
and returns a constant answer; bench/match_http.py's) run as the same number of separate
uvicorn processes, measured right before the signet hosts of that count (a shared machine's load
drifts within minutes). Its scaling from 1 to 2 processes is what this machine allows any HTTP
server; the signet rows are read against it. Scaling efficiency = req/s(N) / (N x req/s(1)).

The import is not what this measures, but its time is printed: on PostgreSQL it is far slower
than on SQLite (see docs/scaling.md, "Match throughput with hosts").

On a machine with fewer cores than hosts + load generator (this project's 2-core class) the
load generator competes with the hosts for the same cores, so 2 hosts cannot double anything
here; the output says so. Server CPU per request (read from /proc) is printed too: it is what
should stay flat as hosts are added (nothing per request is shared but PostgreSQL, which
/v1/match does not touch: every host answers from its own in-memory index).

Load generator: `wrk` if on PATH, else a multi-process Python client round-robining its
connections over the hosts (bench/match_http.py's client; it under-reports a fast endpoint).
Every process started and the database are removed on exit, Ctrl-C included.

Run: nice -n 10 .venv/bin/python bench/match_hosts.py [--signals 200000] [--hosts 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import machine_info, print_table
from match_http import (
    BARE_APP,
    BIN,
    LUA,
    _get,
    _py_client,
    flip,
    free_port,
    group_cpu,
    server,
    signet_ready,
)

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ORIGIN = "hosts.example"
BODIES = 1000


# --- the database --------------------------------------------------------------------------


def _admin(sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(name: str) -> Iterator[str]:
    """A new, empty database; dropped on exit (FORCE: a host killed mid-query may leave a
    connection behind for a moment)."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped database {name}", file=sys.stderr)


def pdq_code(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def load(env: dict[str, str], work: Path, n: int, n_pdq: int) -> tuple[list[str], list[str], str]:
    """Create the node (schema + key) and import n signals; returns (md5s, pdqs, API key)."""
    rng = random.Random(1)
    md5s = [rng.randbytes(16).hex() for _ in range(n - n_pdq)]
    pdqs = [pdq_code(rng) for _ in range(n_pdq)]
    listing = work / "list.jsonl"
    with listing.open("w") as f:
        for v in md5s:
            f.write(json.dumps({"type": "md5", "value": v, "categories": ["csam"]}) + "\n")
        for v in pdqs:
            item = {"type": "pdq", "value": v, "quality": 90, "categories": ["csam"]}
            f.write(json.dumps(item) + "\n")
    signet = str(BIN / "signet")
    subprocess.run([signet, "db", "upgrade"], env=env, check=True, capture_output=True)
    t = time.perf_counter()
    done = subprocess.run([signet, "import", str(listing), "--quiet"], env=env, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"signet import exited {done.returncode}")
    s = time.perf_counter() - t
    print(f"imported {n:,} signals in {s:.0f} s ({n / s:,.0f}/s)", file=sys.stderr)
    key = subprocess.run(
        [signet, "api-keys", "create", "--name", "bench", "--scopes", "match"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    listing.unlink()
    return md5s, pdqs, key


# --- load ----------------------------------------------------------------------------------


def drive(
    gen: str,
    ports: list[int],
    bodies: list[str],
    key: str,
    duration: float,
    connections: int,
    work: Path,
    path: str = "/v1/match",
) -> dict[str, Any]:
    """The same load spread over every port at once; summed req/s, worst host's p50 / p99."""
    if gen == "python":
        return _drive_python(ports, bodies, key, duration, connections, path)
    # One wrk per host, all started before any is waited for; killed if we are interrupted.
    procs: list[subprocess.Popen[str]] = []
    try:
        for port in ports:
            d = work / f"wrk-{port}"
            d.mkdir(exist_ok=True)
            (d / "bodies.txt").write_text("\n".join(bodies) + "\n")
            (d / "post.lua").write_text(LUA % {"bodies": d / "bodies.txt", "key": key})
            cmd = ["wrk", "-t1", f"-c{connections // len(ports)}", f"-d{duration:g}s"]
            cmd += ["-s", str(d / "post.lua"), f"http://127.0.0.1:{port}{path}"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=duration + 60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    per_host = []
    for out in outs:
        stats = json.loads(out[out.index("JSON ") + 5 :].splitlines()[0])
        stats["rps"] = stats["requests"] / duration
        per_host.append(stats)
    return {
        "rps": sum(r["rps"] for r in per_host),
        "per_host_rps": [r["rps"] for r in per_host],
        # wrk reports microseconds
        "p50_ms": max(r["p50"] for r in per_host) / 1000,
        "p99_ms": max(r["p99"] for r in per_host) / 1000,
        "errors": sum(r["errors"] + r["status"] for r in per_host),
    }


def _drive_python(
    ports: list[int], bodies: list[str], key: str, duration: float, procs: int, path: str
) -> dict[str, Any]:
    # One process per connection would swamp two cores; 8 processes, round-robin over hosts.
    procs = min(procs, 8)
    start_at = time.time() + 1.0
    args = [(ports[i % len(ports)], bodies, key, duration, start_at, path) for i in range(procs)]
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_py_client, args)
    lat = sorted(x for p in parts for x in p if x >= 0)
    per_port = [0.0] * len(ports)
    for i, p in enumerate(parts):
        per_port[i % len(ports)] += sum(1 for x in p if x >= 0) / duration
    return {
        "rps": len(lat) / duration,
        "per_host_rps": per_port,
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else 0.0,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0,
        "errors": sum(1 for p in parts for x in p if x < 0),
    }


# --- main ----------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--signals", type=int, default=200_000, help="signals in the database")
    ap.add_argument("--pdq", type=int, default=20_000, help="of which PDQ (the rest md5)")
    ap.add_argument("--hosts", default="1,2", help="host counts to measure")
    ap.add_argument("--workers", type=int, default=1, help="workers per host")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each")
    ap.add_argument("--connections", type=int, default=64, help="in total, split over hosts")
    ap.add_argument("--queries", default="md5,pdq", help="which of md5, pdq to drive")
    ap.add_argument("--database", default="signet_bench_hosts")
    ap.add_argument("--generator", choices=["wrk", "python"], default=None)
    args = ap.parse_args()
    gen = args.generator or ("wrk" if shutil.which("wrk") else "python")
    host_counts = [int(h) for h in args.hosts.split(",")]
    cores = os.cpu_count() or 1
    print(
        machine_info(
            {
                "load generator": f"{gen} (one per host)" if gen == "wrk" else gen,
                "connections": f"{args.connections} in total",
                "workers per host": str(args.workers),
            }
        )
    )
    busiest = max(host_counts) * args.workers
    if cores < busiest + 1:
        print(
            f"NOTE: {cores} cores for up to {busiest} server process(es) plus the load "
            "generator: they compete for the same cores, so throughput cannot grow in "
            "proportion to hosts here; compare with the bare FastAPI rows of the same run."
        )
    # Ctrl-C and SIGTERM unwind through the finally blocks below (servers, database, files).
    # (SIGINT set explicitly too: a shell starts background jobs with it ignored.)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="signet-bench-hosts-"))
    rows: list[dict[str, Any]] = []
    rng = random.Random(7)

    def point(
        label: str, query: str, hosts: int, pgids: list[int], ports: list[int], bodies: list[str]
    ) -> None:
        key, path = (token, "/v1/match") if label.startswith("signet") else ("x", "/v1/match")
        if args.warmup > 0:
            drive(gen, ports, bodies, key, args.warmup, args.connections, work, path)
        cpu0 = sum(group_cpu(g) for g in pgids)
        r = drive(gen, ports, bodies, key, args.duration, args.connections, work, path)
        cpu = sum(group_cpu(g) for g in pgids) - cpu0
        rows.append(
            {
                "endpoint": label,
                "query": query,
                "hosts": hosts,
                "req/s": f"{r['rps']:.0f}",
                "per host": " / ".join(f"{x:.0f}" for x in r["per_host_rps"]),
                "p50 ms (worst host)": f"{r['p50_ms']:.1f}",
                "p99 ms (worst host)": f"{r['p99_ms']:.1f}",
                "server CPU ms/req": f"{1000 * cpu / max(r['rps'] * args.duration, 1):.3f}",
                "errors": int(r["errors"]),
                "_rps": r["rps"],
            }
        )
        print({k: v for k, v in rows[-1].items() if not k.startswith("_")}, file=sys.stderr)

    token = ""
    try:
        (work / "bare_app.py").write_text(BARE_APP)
        bare_bodies = [json.dumps({"queries": [{"type": "md5", "value": "00" * 16}]})] * BODIES

        def bare(hosts: int) -> None:
            """The baseline: the bare endpoint as `hosts` separate uvicorn processes, measured
            right before the signet hosts of the same count (the machine's load drifts)."""
            with contextlib.ExitStack() as stack:
                ports, pgids = [], []
                for _ in range(hosts):
                    port = free_port()
                    cmd = [str(BIN / "uvicorn"), "--app-dir", str(work), "bare_app:app"]
                    cmd += ["--host", "127.0.0.1", "--port", str(port)]
                    cmd += ["--workers", str(args.workers), "--log-level", "warning"]
                    cmd += ["--no-access-log"]
                    url = f"http://127.0.0.1:{port}"
                    ready = lambda u=url: _get(u + "/healthz")[0] == 200  # noqa: E731
                    pgids.append(stack.enter_context(server(cmd, dict(os.environ), port, ready)))
                    ports.append(port)
                point("bare FastAPI (def)", "-", hosts, pgids, ports, bare_bodies)

        with fresh_database(args.database) as db_url:
            base_env = {
                **os.environ,
                "SIGNET_DATABASE_URL": db_url,
                "SIGNET_ORIGIN": ORIGIN,
                "SIGNET_HOST": "127.0.0.1",
                # Pull loops, checkpoints and expiry are not what this measures; each host
                # still follows the database with its index poller.
                "SIGNET_BACKGROUND": "false",
                "SIGNET_LOG_LEVEL": "warning",
                # One key drives all the load: the per-key limit would answer most with 429s.
                "SIGNET_RATE_LIMIT": "0",
            }
            for name in ("SIGNET_URL", "SIGNET_API_KEY"):
                base_env.pop(name, None)
            first = work / "host-0"
            md5s, pdqs, token = load(
                {**base_env, "SIGNET_DATA_DIR": str(first)}, work, args.signals, args.pdq
            )
            queries = {
                "md5": [
                    json.dumps({"queries": [{"type": "md5", "value": rng.choice(md5s)}]})
                    for _ in range(BODIES)
                ],
                "pdq": [
                    json.dumps(
                        {
                            "queries": [
                                {
                                    "type": "pdq",
                                    "value": flip(bytes.fromhex(rng.choice(pdqs)), 8, rng).hex(),
                                }
                            ]
                        }
                    )
                    for _ in range(BODIES)
                ]
                if pdqs
                else [],
            }
            for hosts in host_counts:
                bare(hosts)
                with contextlib.ExitStack() as stack:
                    ports, pgids = [], []
                    t0 = time.perf_counter()
                    for i in range(hosts):
                        # Each host its own data dir with only the node key in it (a mounted
                        # secret in a real deployment): its index files, logs and metrics are
                        # its own.
                        data = work / f"host-{i}"
                        if i > 0 and not data.exists():
                            data.mkdir(mode=0o700)
                            shutil.copy2(first / "node.key", data / "node.key")
                        port = free_port()
                        env = {**base_env, "SIGNET_DATA_DIR": str(data), "SIGNET_PORT": str(port)}
                        url = f"http://127.0.0.1:{port}"
                        pgids.append(
                            stack.enter_context(
                                server(
                                    [str(BIN / "signet"), "serve", "--workers", str(args.workers)],
                                    env,
                                    port,
                                    signet_ready(url, args.signals, args.workers),
                                )
                            )
                        )
                        ports.append(port)
                    print(
                        f"{hosts} host(s) ready in {time.perf_counter() - t0:.0f} s",
                        file=sys.stderr,
                    )
                    for q in args.queries.split(","):
                        if queries.get(q):
                            point("signet /v1/match", f"{q} (hit)", hosts, pgids, ports, queries[q])
    except KeyboardInterrupt:
        print("interrupted: servers stopped, database dropped", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # Scaling efficiency against the same endpoint's own 1-host figure, and the bare
    # endpoint's efficiency at the same host count: the machine's ceiling for any server.
    one = {(r["endpoint"], r["query"]): r["_rps"] for r in rows if r["hosts"] == 1}
    bare = {r["hosts"]: r["_rps"] for r in rows if r["endpoint"].startswith("bare")}
    for r in rows:
        base = one.get((r["endpoint"], r["query"]))
        r["efficiency vs 1 host"] = f"{r['_rps'] / (r['hosts'] * base):.0%}" if base else "-"
        r["vs bare, same hosts"] = (
            f"{r['_rps'] / bare[r['hosts']]:.0%}" if r["hosts"] in bare else "-"
        )
    print_table([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    print(
        f"efficiency = req/s(N hosts) / (N x req/s(1 host)); {cores} cores shared by the "
        "hosts and the load generator"
    )


if __name__ == "__main__":
    main()
