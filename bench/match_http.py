"""The match endpoint under load over loopback, beside a bare FastAPI endpoint in the same run.

For each index size (default 200k and 1M PDQ signals, plus 10k MD5 signals) and each worker
count (1 and 2), it starts `signet serve --workers W` on a fresh SQLite node, waits until every
worker has loaded its index, and drives POST /v1/match from a second process:

- exact: one md5 query per request, each a stored hash (one hit);
- pdq: one PDQ query per request, a stored code with 8 bits flipped (one hit at distance 8);
- miss: one md5 query that hits nothing (the endpoint's floor);

then the same load against a bare FastAPI app (one POST route that parses the JSON body and
returns a constant one-result answer) under the same uvicorn settings (uvloop, httptools, W
workers). The goal is match/exact >= 50% of the bare endpoint's requests/s.

Load generator: `wrk` (C, one thread, 64 connections, a Lua script rotating 1000 request bodies)
if it is on PATH, else a multi-process Python client (http.client, one keep-alive connection per
process); `--generator` forces one. wrk drives several times more load than the Python client on
this machine class, so the Python one under-reports a fast endpoint.

Each point is measured after `--warmup` unmeasured seconds of the same load (the first requests
after start-up pay one-off costs that are not the steady state) and reports requests/s, latency
p50 / p99 / p99.9 / max, and the server's CPU time per answered request (all its processes, read
from /proc): on a machine shared with other work the latencies swing from run to run, the CPU
cost much less. Once the workers are ready it also reads the server's memory: the sum of its
processes' PSS (a page shared by n processes counts 1/n, so a shared PDQ base file counts once)
and the largest private RSS of one process. The per-key rate limit is off for the signet
processes (one key drives all the load). `--gc` also loads a worker's index in a fresh process
and times one full garbage collection over it, with the index visible to the collector and
frozen (`IndexSync.load`), and the match work of one request of each kind without HTTP: where a
request's time goes.
`--memory` loads a worker's index (`IndexSync.load`) in a fresh process with the signet
processes' environment and reports what it costs: RSS after minus before (all of it, and the
anonymous part, which is not shared with other workers), per signal, the peak (the process's
VmHWM minus RSS before), and the load time, beside the raw PDQ code bytes (32 per code);
`--workers 0` measures only that.
`--env KEY=VALUE` passes settings to the signet processes (e.g. `PYTHONPATH=` an older checkout,
to measure before and after in one sitting); `--data DIR` keeps the loaded nodes for reuse.

Bench data is loaded directly: signals are built and signed like the service layer does, and
appended to the exchange log with their `change_seq`, but inserted with one SQLAlchemy Core
`executemany` per 20k rows instead of the ORM (the service path takes ~1.4 ms per signal here,
23 minutes for 1M). Every figure is requests/s and latency percentiles over `--duration` seconds.

Run: .venv/bin/python bench/match_http.py [--sizes 200000,1000000] [--workers 1,2] [--gc]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import machine_info, print_table, smaps_rollup

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MD5_SIGNALS = 10_000
BODIES = 1000
CONNECTIONS = 64


# --- bench data ----------------------------------------------------------------------------


def flip(code: bytes, bits: int, rng: random.Random) -> bytes:
    out = bytearray(code)
    for b in rng.sample(range(256), bits):
        out[b // 8] ^= 1 << (b % 8)
    return bytes(out)


def load_signals(data_dir: Path, n_pdq: int, seed: int = 1) -> tuple[list[str], list[str], str]:
    """Create a node with n_pdq PDQ + MD5_SIGNALS MD5 signals; returns (pdq codes, md5s, key)."""
    from app.ids import new_id
    from app.services import apikeys, records
    from app.services.node import open_node
    from app.services.tx import transaction
    from app.settings import load_settings
    from app.signals.match_index import match_key
    from app.storage.models import SignalRow
    from app.storage.types import utcnow

    node = open_node(load_settings(data_dir=data_dir, origin="bench.example", background=False))
    rng = random.Random(seed)
    pdqs = [rng.randbytes(32).hex() for _ in range(n_pdq)]
    md5s = [rng.randbytes(16).hex() for _ in range(MD5_SIGNALS)]
    items = [("pdq", v, {"quality": 100}) for v in pdqs] + [("md5", v, {}) for v in md5s]
    now = utcnow()
    until = now + timedelta(days=365)
    table = SignalRow.__table__  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for start in range(0, len(items), 20_000):
        with transaction(node) as tx:
            rows = []
            for type_, value, attrs in items[start : start + 20_000]:
                uid = new_id()
                body = records.signal_body(
                    uid=uid,
                    version=1,
                    type_=type_,
                    value=value,
                    attrs=attrs,
                    categories=["csam"],
                    indicators=[],
                    opinion="investigation_seed",
                    confidence=50,
                    reviewed=False,
                    valid_from=now,
                    valid_until=until,
                    tlp="green",
                    peers=[],
                    hops=1,
                )
                record = records.sign(node, body)
                seq = tx.append_record("signal", record, "green")
                rows.append(
                    {
                        "uid": uid,
                        "origin": node.origin,
                        "version": 1,
                        "type": type_,
                        "value": value,
                        "match_key": match_key(type_, value, None),
                        "attrs": attrs,
                        "categories": ["csam"],
                        "indicators": [],
                        "opinion": "investigation_seed",
                        "confidence": 50,
                        "reviewed": False,
                        "tlp": "green",
                        "audience_peers": [],
                        "audience_hops": 1,
                        "valid_from": now,
                        "valid_until": until,
                        "status": "active",
                        "created_at": now,
                        "updated_at": now,
                        "change_seq": seq,
                        "hops": 0,
                        "feedback_counts": {},
                        "feedback_status": "none",
                        "record": record,
                    }
                )
            tx.session.execute(table.insert(), rows)
    load_s = time.perf_counter() - t0
    print(
        f"  loaded {len(items):,} signed signals in {load_s:.1f} s ({len(items) / load_s:,.0f}/s)",
        file=sys.stderr,
    )
    key = apikeys.create(node, "bench", ["match"], False).key
    node.db.dispose()
    return pdqs, md5s, key


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=5)
    try:
        conn.request("GET", u.path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every process of a process group: the
    server's cost per request, which (unlike latency) a busy machine does not inflate much."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for _proc, fields in _group_stats(pgid):
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _group_stats(pgid: int) -> Iterator[tuple[Path, list[str]]]:
    """(/proc/<pid>, the fields of its stat after the command name) for each process of a
    process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            yield stat.parent, fields


def group_memory(pgid: int) -> dict[str, float]:
    """Memory of a process group (the server's processes), in MiB: the sum of their PSS (each
    page shared by n processes counted 1/n: what the host spends on the server, page cache of
    shared files included) and the largest single process's private (anonymous) RSS."""
    pss = anon = 0
    for proc, _fields in _group_stats(pgid):
        fields = smaps_rollup(int(proc.name))
        pss += fields.get("Pss", 0)
        anon = max(anon, fields.get("Anonymous", 0))
    return {"pss_mib": pss / 1024, "anon_mib": anon / 1024}


@contextmanager
def server(
    cmd: list[str], env: dict[str, str], port: int, ready: Callable[[], bool], timeout: float = 900
) -> Iterator[int]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError("server did not start:\n" + log.read().decode()[-3000:])
            time.sleep(0.2)
        yield proc.pid  # its process group: start_new_session
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def signet_ready(url: str, expected: int, workers: int) -> Callable[[], bool]:
    """Ready when `workers` fresh connections in a row all report the full index (a new
    connection lands on any worker, so a few rounds cover them all)."""

    def ready() -> bool:
        for _ in range(4 * workers):
            status, body = _get(url + "/readyz")
            if status != 200:
                return False
            m = re.match(r"(\d+)", json.loads(body)["checks"]["match_index"])
            if not m or int(m.group(1)) < expected:
                return False
        return True

    return ready


BARE_APP = """
from typing import Any
from fastapi import FastAPI
app = FastAPI()
RESULT = {"results": [{"index": 0, "status": "ok", "matches": []}]}

@app.post("/v1/match")
def match(body: dict[str, Any]) -> dict[str, Any]:
    return RESULT

@app.post("/v1/match-async")
async def match_async(body: dict[str, Any]) -> dict[str, Any]:
    return RESULT

@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
"""


# --- load generators -----------------------------------------------------------------------

LUA = """
local bodies = {}
local f = io.open("%(bodies)s", "r")
for line in f:lines() do bodies[#bodies + 1] = line end
f:close()
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %%d, \\"errors\\": %%d, \\"status\\": %%d, " ..
    "\\"p50\\": %%g, \\"p99\\": %%g, \\"p999\\": %%g, \\"max\\": %%g}\\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def run_wrk(
    url: str, bodies: list[str], key: str, duration: float, workdir: Path, path: str = "/v1/match"
) -> dict[str, float]:
    bfile = workdir / "bodies.txt"
    bfile.write_text("\n".join(bodies) + "\n")
    script = workdir / "post.lua"
    script.write_text(LUA % {"bodies": bfile, "key": key})
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration:g}s", "-s", str(script), url + path],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    stats = json.loads(out[out.index("JSON ") + 5 :].splitlines()[0])
    return {
        "rps": stats["requests"] / duration,
        "duration": duration,
        "p50_ms": stats["p50"] / 1000,
        "p99_ms": stats["p99"] / 1000,
        "p999_ms": stats["p999"] / 1000,
        "max_ms": stats["max"] / 1000,
        "errors": stats["errors"] + stats["status"],
    }


def _py_client(args: tuple[int, list[str], str, float, Any, str]) -> list[float]:
    import http.client

    port, bodies, key, duration, start_at, path = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    lat: list[float] = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    i = 0
    while time.time() < end:
        t = time.perf_counter()
        conn.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t)
        if resp.status != 200:
            lat[-1] = -1.0
        i += 1
    conn.close()
    return lat


def run_python(
    port: int, bodies: list[str], key: str, duration: float, path: str = "/v1/match", procs: int = 8
) -> dict[str, float]:
    start_at = time.time() + 1.0
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_py_client, [(port, bodies, key, duration, start_at, path)] * procs)
    lat = sorted(x for p in parts for x in p if x >= 0)
    errors = sum(1 for p in parts for x in p if x < 0)
    return {
        "rps": len(lat) / duration,
        "duration": duration,
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else 0.0,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0,
        "p999_ms": lat[int(len(lat) * 0.999)] * 1000 if lat else 0.0,
        "max_ms": lat[-1] * 1000 if lat else 0.0,
        "errors": errors,
    }


# --- in one process: garbage collection over the index, and the match work itself ----------


def _in_process(data_dir: str, bodies: dict[str, list[str]], out: Any) -> None:
    """In a fresh process: load a worker's index from the node, then time one full garbage
    collection with the index visible to the collector (as before issue 15) and frozen (as
    `IndexSync.load` leaves it), and the match work of one request of each kind without HTTP."""
    import gc

    from app.services import matching
    from app.services.index_sync import IndexSync
    from app.services.node import open_node
    from app.settings import load_settings

    node = open_node(load_settings(data_dir=Path(data_dir), origin="bench.example"))
    sync = IndexSync(node)
    gc.disable()
    sync._load()  # the load without the freeze
    gc.enable()
    gc.collect()
    res: dict[str, float] = {"tracked": len(gc.get_objects())}
    t = time.perf_counter()
    gc.collect()
    res["gc_s"] = time.perf_counter() - t
    gc.freeze()
    t = time.perf_counter()
    gc.collect()
    res["gc_frozen_s"] = time.perf_counter() - t
    # The high-water mark of this process alone (VmHWM): getrusage's ru_maxrss would carry
    # over the peak of the process it was spawned from (see MEASURE_LOAD).
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f)
    res["rss_mib"] = int(status["VmHWM"].split()[0]) / 1024
    for kind, lines in bodies.items():
        queries = [json.loads(b)["queries"] for b in lines]
        t = time.perf_counter()
        for q in queries:
            matching.match_batch(node, q)
        res[f"{kind}_ms"] = 1000 * (time.perf_counter() - t) / len(queries)
    out.put(res)


def in_process(data_dir: Path, bodies: dict[str, list[str]]) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_in_process, args=(str(data_dir), bodies, q))
    p.start()
    res: dict[str, float] = q.get()
    p.join()
    return res


# --- a worker's index load: memory and time --------------------------------------------------

# Run as `python -c` with the signet processes' environment (so `--env PYTHONPATH=<tree>`
# measures that tree's code), in a fresh process: argv[1] is the node's data dir.
MEASURE_LOAD = """
import gc, json, sys, time
from pathlib import Path

from app.services.index_sync import IndexSync
from app.services.node import open_node
from app.settings import load_settings


# The peak is VmHWM, this process's own high-water mark, not getrusage's ru_maxrss: that one
# survives fork and exec, so it starts at the bench's own peak (hundreds of MiB of codes and
# request bodies at 1M signals: a child of a 410 MiB parent reads 410 MiB at its first line),
# and a load that peaked lower showed the parent's figure instead.
def rss():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    keys = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    return {k: int(status[k].split()[0]) * 1024 for k in keys}


node = open_node(load_settings(data_dir=Path(sys.argv[1]), origin="bench.example"))
with node.db.read() as session:  # the connection and its first query, before measuring
    session.connection().exec_driver_sql("SELECT count(*) FROM signal").scalar()
gc.collect()
before = rss()
t = time.perf_counter()
sync = IndexSync(node)
sync.load()
load_s = time.perf_counter() - t
gc.collect()
after = rss()
stats = node.index.stats()
print("JSON " + json.dumps({
    "signals": len(node.index),
    "pdq": stats["pdq"],
    "load_s": load_s,
    "rss": after["VmRSS"] - before["VmRSS"],
    "anon": after["RssAnon"] - before["RssAnon"],
    "file": after["RssFile"] - before["RssFile"],
    "peak": after["VmHWM"] - before["VmRSS"],
    "pdq_memory": node.index.pdq_memory(),
}))
"""


def measure_load(data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_LOAD, str(data_dir)],
        env={"PYTHONPATH": str(ROOT), **env},
        cwd=data_dir,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    ).stdout
    res: dict[str, Any] = json.loads(out[out.index("JSON ") + 5 :].splitlines()[0])
    return res


def _memory_row(n: int, r: dict[str, Any]) -> dict[str, Any]:
    mib = 1024 * 1024
    signals = r["signals"]
    return {
        "signals": f"{signals:,}",
        "PDQ": f"{r['pdq']:,}",
        "load s": f"{r['load_s']:.1f}",
        "RSS MiB": f"{r['rss'] / mib:,.0f}",
        "anon MiB": f"{r['anon'] / mib:,.0f}",
        "peak MiB": f"{r['peak'] / mib:,.0f}",
        "B/signal": f"{r['rss'] / signals:,.0f}",
        "anon B/signal": f"{r['anon'] / signals:,.0f}",
        "raw PDQ codes MiB": f"{32 * r['pdq'] / mib:,.0f}",
        "PDQ base MiB": f"{r['pdq_memory']['pdq']['layout']} "
        f"{r['pdq_memory']['pdq'].get('shared', 0) / mib:,.0f}",
    }


# --- main ----------------------------------------------------------------------------------


def bodies_for(kind: str, pdqs: list[str], md5s: list[str], rng: random.Random) -> list[str]:
    out = []
    for _ in range(BODIES):
        if kind == "exact":
            q = {"type": "md5", "value": rng.choice(md5s)}
        elif kind == "miss":
            q = {"type": "md5", "value": rng.randbytes(16).hex()}
        else:
            q = {"type": "pdq", "value": flip(bytes.fromhex(rng.choice(pdqs)), 8, rng).hex()}
        out.append(json.dumps({"queries": [q]}, separators=(",", ":")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200000,1000000", help="PDQ signals per run")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each")
    ap.add_argument(
        "--gc",
        action="store_true",
        help="also time one full garbage collection in a worker's index, frozen and not",
    )
    ap.add_argument(
        "--memory",
        action="store_true",
        help="also load a worker's index in a fresh process: RSS, bytes per signal, load time",
    )
    ap.add_argument("--generator", choices=["wrk", "python"], default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temp data dirs")
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="keep the loaded nodes under this directory and reuse them on the next run",
    )
    ap.add_argument(
        "--queries", default="exact,miss,pdq", help="which of exact, miss, pdq to drive"
    )
    ap.add_argument("--no-bare", action="store_true", help="skip the bare FastAPI baseline")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the signet processes")
    args = ap.parse_args()
    gen = args.generator or ("wrk" if shutil.which("wrk") else "python")
    sizes = [int(s) for s in args.sizes.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",") if int(w) > 0]
    print(machine_info({"load generator": gen, "connections": str(CONNECTIONS)}))
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    gc_rows: list[dict[str, Any]] = []
    mem_rows: list[dict[str, Any]] = []
    env_args = dict(e.split("=", 1) for e in args.env)
    work = Path(tempfile.mkdtemp(prefix="signet-bench-"))

    def drive(
        pgid: int, port: int, bodies: list[str], key: str, path: str = "/v1/match"
    ) -> dict[str, float]:
        # A short unmeasured run first: the first requests after start-up pay one-off costs
        # (API key and roster reads, first calls into numpy) that are not the steady state.
        url = f"http://127.0.0.1:{port}"
        if args.warmup > 0:
            if gen == "wrk":
                run_wrk(url, bodies, key, args.warmup, work, path)
            else:
                run_python(port, bodies, key, args.warmup, path)
        cpu0 = group_cpu(pgid)
        if gen == "wrk":
            r = run_wrk(url, bodies, key, args.duration, work, path)
        else:
            r = run_python(port, bodies, key, args.duration, path)
        r["cpu_s"] = group_cpu(pgid) - cpu0
        return r

    try:
        for workers in worker_counts:
            port = free_port()
            app_file = work / "bare_app.py"
            app_file.write_text(BARE_APP)
            cmd = [
                str(BIN / "uvicorn"),
                "--app-dir",
                str(work),
                "bare_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            url = f"http://127.0.0.1:{port}"
            if args.no_bare:
                continue
            with server(
                cmd, dict(os.environ), port, lambda u=url: _get(u + "/healthz")[0] == 200
            ) as pgid:
                for path, label in (
                    ("/v1/match", "bare FastAPI (def)"),
                    ("/v1/match-async", "bare FastAPI (async def)"),
                ):
                    r = drive(
                        pgid, port, bodies_for("exact", ["00" * 32], ["00" * 16], rng), "x", path
                    )
                    rows.append(
                        {
                            "signals": "-",
                            "workers": workers,
                            "endpoint": label,
                            "query": "md5",
                            **_fmt(r),
                        }
                    )
                    print(rows[-1], file=sys.stderr)
        for n in sizes:
            data = (args.data or work) / f"node-{n}"
            meta = data / "bench-meta.json"
            if args.data is not None and meta.exists():
                pdqs, md5s, key = json.loads(meta.read_text())
                print(f"reusing {data}", file=sys.stderr)
            else:
                shutil.rmtree(data, ignore_errors=True)
                print(f"loading {n:,} PDQ + {MD5_SIGNALS:,} MD5 signals", file=sys.stderr)
                pdqs, md5s, key = load_signals(data, n)
                if args.data is not None:
                    meta.write_text(json.dumps([pdqs, md5s, key]))
            if args.gc:
                r = in_process(
                    data, {k: bodies_for(k, pdqs, md5s, rng) for k in ("exact", "miss", "pdq")}
                )
                gc_rows.append(
                    {
                        "signals": f"{n:,}",
                        "objects the collector tracks": f"{r['tracked']:,.0f}",
                        "full collection": f"{r['gc_s'] * 1000:,.0f} ms",
                        "full collection, index frozen": f"{r['gc_frozen_s'] * 1000:,.1f} ms",
                        "RSS": f"{r['rss_mib']:,.0f} MiB",
                        "match_batch md5 hit / miss / pdq": (
                            f"{r['exact_ms']:.3f} / {r['miss_ms']:.3f} / {r['pdq_ms']:.3f} ms"
                        ),
                    }
                )
                print(gc_rows[-1], file=sys.stderr)
            if args.memory:
                env = {**os.environ, "SIGNET_LOG_LEVEL": "warning", **env_args}
                env.pop("SIGNET_DATABASE_URL", None)
                mem_rows.append(_memory_row(n, measure_load(data, env)))
                print(mem_rows[-1], file=sys.stderr)
            for workers in worker_counts:
                port = free_port()
                env = {
                    **os.environ,
                    "SIGNET_DATA_DIR": str(data),
                    "SIGNET_PORT": str(port),
                    "SIGNET_HOST": "127.0.0.1",
                    "SIGNET_ORIGIN": "bench.example",
                    "SIGNET_BACKGROUND": "false",
                    "SIGNET_LOG_LEVEL": "warning",
                    # One key drives all the load: the per-key limit (100/s by default) would
                    # answer most of it with 429s, which is not what this measures.
                    "SIGNET_RATE_LIMIT": "0",
                    **env_args,
                }
                env.pop("SIGNET_DATABASE_URL", None)
                url = f"http://127.0.0.1:{port}"
                t0 = time.perf_counter()
                with server(
                    [str(BIN / "signet"), "serve", "--workers", str(workers)],
                    env,
                    port,
                    signet_ready(url, n + MD5_SIGNALS, workers),
                ) as pgid:
                    start_s = time.perf_counter() - t0
                    memory = group_memory(pgid)
                    print(
                        f"  {workers} worker(s) ready in {start_s:.1f} s; server PSS"
                        f" {memory['pss_mib']:,.0f} MiB, largest private RSS"
                        f" {memory['anon_mib']:,.0f} MiB",
                        file=sys.stderr,
                    )
                    for kind, label in (
                        (k, lbl)
                        for k, lbl in (
                            ("exact", "md5 (hit)"),
                            ("miss", "md5 (miss)"),
                            ("pdq", "pdq t=31 (hit)"),
                        )
                        if k in args.queries.split(",")
                    ):
                        r = drive(pgid, port, bodies_for(kind, pdqs, md5s, rng), key)
                        rows.append(
                            {
                                "signals": f"{n:,}",
                                "workers": workers,
                                "endpoint": "signet /v1/match",
                                "query": label,
                                **_fmt(r),
                                "start s": f"{start_s:.0f}",
                                "server PSS MiB": f"{memory['pss_mib']:,.0f}",
                            }
                        )
                        print(rows[-1], file=sys.stderr)
            if not args.keep and args.data is None:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    # Compared with the bare *sync* route: /v1/match is a sync route too (FastAPI runs it and
    # its dependencies in the thread pool); the async row shows what that costs.
    bare = {r["workers"]: float(r["req/s"]) for r in rows if r["endpoint"] == "bare FastAPI (def)"}
    for r in rows:
        if r["workers"] in bare:
            r["vs bare def"] = f"{float(r['req/s']) / bare[r['workers']]:.0%}"
    if rows:
        print_table(rows)
    if mem_rows:
        print()
        print_table(mem_rows)
    if gc_rows:
        print()
        print_table(gc_rows)


def _fmt(r: dict[str, float]) -> dict[str, Any]:
    return {
        "req/s": f"{r['rps']:.0f}",
        "p50 ms": f"{r['p50_ms']:.2f}",
        "p99 ms": f"{r['p99_ms']:.1f}",
        "p99.9 ms": f"{r['p999_ms']:.1f}",
        "max ms": f"{r['max_ms']:.0f}",
        # Server CPU per answered request: robust to a busy machine, unlike the latencies.
        "server CPU ms/req": f"{1000 * r['cpu_s'] / max(r['rps'] * r['duration'], 1):.3f}",
        "errors": int(r["errors"]),
    }


if __name__ == "__main__":
    main()
