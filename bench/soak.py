"""Soak: well-behaved API keys beside a flooding one, on a real node process (loopback only).

Starts `signet serve` on a fresh SQLite node (SIGNET_RATE_LIMIT from --rate-limit), creates
keys, and runs two phases of --seconds each, back to back in one run:

1. baseline: --keys well-behaved keys, each a paced mix of submit (POST /v1/signals), match
   (POST /v1/match, PDQ) and feed reads (GET /v1/signals pages);
2. flood: the same traffic plus one key sending heavy match batches (threshold 48, 100 codes) as
   fast as --flood-threads connections allow.

Reports, per phase, for the well-behaved keys: requests, errors (anything but 200), p50/p99
latency; for the flooder: answered 200 and refused 429; and the server's memory (RSS of the
process tree) sampled every second. Stops by itself after 2 x --seconds.

    .venv/bin/python bench/soak.py --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_info

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_mib(pid: int) -> float:
    """RSS of `pid` and its children (the uvicorn workers), MiB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
        )
        pids += [int(p) for p in out.stdout.split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Client:
    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, float]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.key}", "content-type": "application/json"}
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, data, headers)
            resp = self.conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            status = 0
        return status, time.perf_counter() - t0


def well_behaved(port: int, key: str, stop: threading.Event, out: list[tuple[int, float]],
                 seed: int, rate: float) -> None:  # fmt: skip
    rng = random.Random(seed)
    c = Client(port, key)
    n = 0
    while not stop.is_set():
        n += 1
        pick = n % 3
        if pick == 0:
            code = rng.randbytes(32).hex()
            body = {"signals": [{"type": "pdq", "value": code, "quality": 90,
                                 "categories": ["csam"]}]}  # fmt: skip
            out.append(c.call("POST", "/v1/signals", body))
        elif pick == 1:
            q = {"queries": [{"type": "pdq", "value": rng.randbytes(32).hex()} for _ in range(10)]}
            out.append(c.call("POST", "/v1/match", q))
        else:
            out.append(c.call("GET", "/v1/signals?limit=50"))
        stop.wait(1 / rate)


def flooder(port: int, key: str, stop: threading.Event, out: list[int]) -> None:
    rng = random.Random(99)
    c = Client(port, key)
    q = {"queries": [{"type": "pdq", "value": rng.randbytes(32).hex(), "threshold": 48}
                     for _ in range(100)]}  # fmt: skip
    while not stop.is_set():
        out.append(c.call("POST", "/v1/match", q)[0])


def phase(port: int, pid: int, keys: list[str], flood_key: str | None, args: Any) -> dict[str, Any]:
    stop = threading.Event()
    results: list[list[tuple[int, float]]] = [[] for _ in keys]
    flood: list[int] = []
    threads = [
        threading.Thread(target=well_behaved, args=(port, k, stop, results[i], i, args.rate))
        for i, k in enumerate(keys)
    ]
    if flood_key:
        threads += [threading.Thread(target=flooder, args=(port, flood_key, stop, flood))
                    for _ in range(args.flood_threads)]  # fmt: skip
    for t in threads:
        t.start()
    memory = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        time.sleep(1)
        memory.append(round(tree_rss_mib(pid)))
    stop.set()
    for t in threads:
        t.join(60)
    calls = [r for rs in results for r in rs]
    lat = sorted(d for s, d in calls if s == 200)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    return {
        "requests": len(calls),
        "errors": sum(1 for s, _ in calls if s != 200),
        "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "flood_200": flood.count(200),
        "flood_429": flood.count(429),
        "flood_other": len(flood) - flood.count(200) - flood.count(429),
        "rss_mib": memory,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--keys", type=int, default=3, help="well-behaved keys")
    ap.add_argument("--rate", type=float, default=1.5, help="requests/s per well-behaved key")
    ap.add_argument("--flood-threads", type=int, default=8)
    ap.add_argument("--rate-limit", type=int, default=120, help="SIGNET_RATE_LIMIT per key")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from app.services import apikeys
    from app.services.node import open_node
    from app.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="signet-soak-") as tmp:
        port = free_port()
        env = dict(os.environ, SIGNET_DATA_DIR=tmp, SIGNET_PORT=str(port),
                   SIGNET_HOST="127.0.0.1", SIGNET_ORIGIN="soak.example",
                   SIGNET_RATE_LIMIT=str(args.rate_limit), SIGNET_LOG_LEVEL="warning")  # fmt: skip
        node = open_node(load_settings(data_dir=Path(tmp), origin="soak.example"))
        scopes = ["submit", "match", "read"]
        keys = [apikeys.create(node, f"calm{i}", scopes).key for i in range(args.keys)]
        flood_key = apikeys.create(node, "flooder", ["match"]).key
        node.db.dispose()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        proc = subprocess.Popen([str(BIN / "signet"), "serve", "--workers", str(args.workers)],
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit("node did not start:\n" + log.read().decode()[-2000:])
                time.sleep(0.2)
            print(machine_info({"workers": str(args.workers),
                                "SIGNET_RATE_LIMIT": str(args.rate_limit)}))  # fmt: skip
            base = phase(port, proc.pid, keys, None, args)
            flood = phase(port, proc.pid, keys, flood_key, args)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
    print(f"\n{args.keys} well-behaved keys at {args.rate}/s each (submit, match, feed read); "
          f"{args.seconds:.0f} s per phase")  # fmt: skip
    print(f"{'phase':<10} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'flood 200':>9} {'flood 429':>9} {'other':>5}  RSS MiB per second")  # fmt: skip
    for name, r in (("baseline", base), ("flood", flood)):
        print(f"{name:<10} {r['requests']:>8} {r['errors']:>6} {r['p50_ms']:>7} {r['p99_ms']:>7} "
              f"{r['flood_200']:>9} {r['flood_429']:>9} {r['flood_other']:>5}  "
              f"{r['rss_mib']}")  # fmt: skip


if __name__ == "__main__":
    main()
