"""Ingest of a node's own signals: bulk submit over HTTP and `signet import`, each beside
baselines measured in the same run.

    .venv/bin/python bench/ingest.py [--signals 20000] [--import-rows 1000000] [--skip-import]

1. Bulk submit: a real `signet serve` (one worker, SQLite) receives `POST /v1/signals` batches
   of 1,000 md5 signals on one keep-alive connection. The figure per core is signals divided by
   the server process's CPU seconds (/proc); the client runs on the other core. Baselines: a
   bare FastAPI `def` endpoint taking the same 1,000-item bodies under the same uvicorn
   settings (what HTTP + JSON parsing alone cost), PyNaCl's raw Ed25519 sign rate (each signal
   is signed once) and a raw `sqlite3` executemany of rows as wide as the signal table's.
2. The same service call in-process (`signals.submit_batch`, no HTTP), per core.
3. `signet import` of a generated JSON-lines file (half PDQ, half md5) as a subprocess; the
   figure is rows per CPU second of that process and per wall second. 10M rows (the use case)
   is extrapolated linearly from the measured size, which the output says.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import httpx
import nacl.signing
from common import fmt_rate, machine_info, print_table
from match_http import _get, free_port, server

BIN = Path(sys.executable).parent
BATCH = 1000

BARE_APP = """
from typing import Any
from fastapi import FastAPI
app = FastAPI()

@app.post("/v1/signals")
def submit(body: dict[str, Any]) -> dict[str, Any]:
    return {"created": len(body["signals"]), "duplicate": 0, "rejected": 0, "items": []}

@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
"""


def md5_body(start: int, n: int) -> dict[str, Any]:
    return {
        "signals": [
            {"type": "md5", "value": f"{i:032x}", "categories": ["csam"]}
            for i in range(start, start + n)
        ]
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def server_pid(port: int) -> int:
    """The process listening on `port` (uvicorn with one worker serves in its own process)."""
    inode = None
    want = f":{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(want) and parts[3] == "0A":
            inode = parts[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on {port}")


def post_batches(url: str, key: str, n: int, pid: int, offset: int = 0) -> dict[str, float]:
    bodies = [
        json.dumps(md5_body(offset + s, min(BATCH, n - s))).encode() for s in range(0, n, BATCH)
    ]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(timeout=120) as http:
        http.post(url + "/v1/signals", content=bodies[0], headers=headers)  # warm-up, not timed
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        for body in bodies[1:]:
            r = http.post(url + "/v1/signals", content=body, headers=headers)
            r.raise_for_status()
        wall, cpu = time.perf_counter() - wall, cpu_seconds(pid) - cpu
    sent = n - BATCH
    return {"per_core": sent / cpu, "wall": sent / wall}


def bare_rate(n: int, work: Path) -> dict[str, float]:
    (work / "bare_submit.py").write_text(BARE_APP)
    port = free_port()
    cmd = [
        str(BIN / "uvicorn"),
        "--app-dir",
        str(work),
        "bare_submit:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    url = f"http://127.0.0.1:{port}"
    with server(cmd, dict(os.environ), port, lambda: _get(url + "/healthz")[0] == 200):
        return post_batches(url, "x", n, server_pid(port))


def signet_rate(n: int, work: Path) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "SIGNET_DATA_DIR": str(work / "node"),
        "SIGNET_ORIGIN": "bench.example",
        "SIGNET_PORT": str(port),
        "SIGNET_HOST": "127.0.0.1",
        "SIGNET_BACKGROUND": "false",
        "SIGNET_LOG_LEVEL": "warning",
        "SIGNET_MAX_BATCH": str(BATCH),
    }
    env.pop("SIGNET_DATABASE_URL", None)
    url = f"http://127.0.0.1:{port}"
    ready = lambda: _get(url + "/healthz")[0] == 200  # noqa: E731
    with server([str(BIN / "signet"), "serve"], env, port, ready):
        key = subprocess.run(
            [str(BIN / "signet"), "api-keys", "create", "--name", "b", "--scopes", "submit"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return post_batches(url, key, n, server_pid(port))


def in_process_rate(n: int, work: Path) -> float:
    from app.services import signals
    from app.services.node import open_node
    from app.settings import load_settings

    node = open_node(load_settings(origin="inproc.example", data_dir=work / "inproc"))
    signals.submit_batch(node, md5_body(0, BATCH)["signals"], None)  # warm-up
    t = time.process_time()
    for s in range(BATCH, n, BATCH):
        signals.submit_batch(node, md5_body(s, BATCH)["signals"], None)
    rate = (n - BATCH) / (time.process_time() - t)
    node.db.dispose()
    return rate


def raw_sign_rate(n: int = 20_000) -> float:
    key = nacl.signing.SigningKey.generate()
    msg = b"x" * 500  # about a signal record's canonical size
    t = time.perf_counter()
    for _ in range(n):
        key.sign(msg)
    return n / (time.perf_counter() - t)


def raw_executemany_rate(n: int, work: Path) -> float:
    """Rows/s of a bare sqlite3 executemany into a table as wide as `signal` (30 columns,
    the JSON record as text), WAL and synchronous=NORMAL as the node opens it."""
    db = sqlite3.connect(work / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    cols = [f"c{i}" for i in range(29)]
    db.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {', '.join(cols)}, record TEXT)")
    record = json.dumps({"value": "0" * 32, "signature": "s" * 86, "pad": "p" * 400})
    rows = [(*(f"v{i}-{j}" for j in range(29)), record) for i in range(n)]
    sql = f"INSERT INTO t ({', '.join(cols)}, record) VALUES ({', '.join('?' * 30)})"
    t = time.perf_counter()
    for s in range(0, n, BATCH):
        db.execute("BEGIN")
        db.executemany(sql, rows[s : s + BATCH])
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t)
    db.close()
    return rate


def pdq(i: int) -> str:
    return f"{(i * 0x9E3779B97F4A7C15) % (1 << 64):016x}" * 4


def write_list(path: Path, rows: int) -> None:
    with path.open("w") as f:
        for i in range(rows):
            if i % 2:
                item = {"type": "md5", "value": f"{i:032x}", "categories": ["csam"]}
            else:
                item = {"type": "pdq", "value": pdq(i), "quality": 90, "categories": ["csam"]}
            f.write(json.dumps(item) + "\n")


def import_rate(rows: int, work: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "SIGNET_DATA_DIR": str(work / "import-node"),
        "SIGNET_ORIGIN": "import.example",
        "SIGNET_BACKGROUND": "false",
    }
    env.pop("SIGNET_DATABASE_URL", None)
    subprocess.run([str(BIN / "signet"), "db", "upgrade"], env=env, check=True, capture_output=True)
    listing = work / "list.jsonl"
    write_list(listing, rows)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "signet"), "import", str(listing), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"per_core": rows / cpu, "wall": rows / wall, "seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--signals", type=int, default=20_000)
    ap.add_argument("--import-rows", type=int, default=1_000_000)
    ap.add_argument("--skip-import", action="store_true")
    args = ap.parse_args()
    print(machine_info())
    work = Path(tempfile.mkdtemp(prefix="signet-bench-ingest-"))
    sign = raw_sign_rate()
    raw_insert = raw_executemany_rate(args.signals, work)
    bare = bare_rate(args.signals, work)
    signet = signet_rate(args.signals, work)
    inproc = in_process_rate(args.signals, work)
    rows: list[dict[str, str]] = [
        {"what": "PyNaCl raw Ed25519 sign (baseline)", "per core": f"{fmt_rate(sign)}/s"},
        {
            "what": "raw sqlite3 executemany, signal-wide rows (baseline)",
            "per core": f"{fmt_rate(raw_insert)}/s",
        },
        {
            "what": "bare FastAPI def endpoint, 1,000-item bodies (baseline)",
            "per core": f"{fmt_rate(bare['per_core'])}/s",
            "wall": f"{fmt_rate(bare['wall'])}/s",
        },
        {
            "what": f"POST /v1/signals, batches of {BATCH:,} ({args.signals:,} signals)",
            "per core": f"{fmt_rate(signet['per_core'])}/s "
            f"({signet['per_core'] / sign:.3f}x raw sign)",
            "wall": f"{fmt_rate(signet['wall'])}/s",
        },
        {
            "what": "signals.submit_batch in-process",
            "per core": f"{fmt_rate(inproc)}/s ({inproc / sign:.3f}x raw sign)",
        },
    ]
    if not args.skip_import:
        imp = import_rate(args.import_rows, work)
        ten_m = imp["seconds"] * 10_000_000 / args.import_rows
        rows.append(
            {
                "what": f"signet import, {args.import_rows:,} rows (half PDQ, half md5)",
                "per core": f"{fmt_rate(imp['per_core'])}/s",
                "wall": f"{fmt_rate(imp['wall'])}/s, {imp['seconds'] / 60:.1f} min "
                f"(10M extrapolated linearly: {ten_m / 3600:.1f} h)",
            }
        )
    print_table(rows)
    shutil.rmtree(work, ignore_errors=True)  # the 1M-row node is ~2 GB


if __name__ == "__main__":
    main()
