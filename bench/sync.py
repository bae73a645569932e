"""Federation sync speed: records/s pulled, verified and applied between two nodes on loopback,
beside PyNaCl's raw Ed25519 verify rate measured in the same run; and how long a retraction
takes to stop matching on every peer of a three-node federation.

    .venv/bin/python bench/sync.py [--records 20000] [--rounds 5]

The source is a real `signet serve` process (SQLite); the receiver runs in this process and
pulls over HTTP on 127.0.0.1, so the figure per receiving core is records / the receiver's
CPU time (the source's serving runs on the other core).
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import nacl.signing

from bench.common import machine_info, print_table, scratch_dir


def raw_verify_rate(n: int = 20_000) -> float:
    """PyNaCl's Ed25519 verify, per CPU second (the pull is measured per CPU second too: on a
    shared machine wall time counts other processes' turns)."""
    key = nacl.signing.SigningKey.generate()
    msgs = [f"record {i}".encode() * 20 for i in range(n)]
    signed = [key.sign(m) for m in msgs]
    vk = key.verify_key
    t = time.process_time()
    for s in signed:
        vk.verify(s)
    return n / (time.process_time() - t)


def pull_rate(records: int, profile: str | None = None) -> dict[str, float]:
    from app.demo import _free_port, _nodes
    from app.services import peers, signals
    from app.services.federation import Federation
    from app.services.node import open_node
    from app.settings import load_settings

    root = Path(scratch_dir("signet-bench-sync-"))
    # Fill the source's database before it starts (through the same service the API uses).
    src_settings = load_settings(origin="platform-a.demo", data_dir=root / "platform-a.demo")
    src = open_node(src_settings)
    for start in range(0, records, 1000):
        batch = [
            {"type": "md5", "value": f"{i:032x}", "categories": ["csam"]}
            for i in range(start, min(records, start + 1000))
        ]
        signals.submit_batch(src, batch, None)
    recv_settings = load_settings(
        origin="bench-receiver.demo",
        data_dir=root / "receiver",
        public_url=f"http://127.0.0.1:{_free_port()}",
        background=False,
    )
    recv = open_node(recv_settings)
    with _nodes(root) as procs:
        a = procs[0]
        for p in procs[1:]:
            p.proc.terminate()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(a.url + "/healthz", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("source node did not start")
            time.sleep(0.1)
        fed = Federation(recv, page_size=1000)
        # The source must know the receiver's key to serve it (its descriptor is never fetched:
        # the receiver does not listen, so pin it directly).
        peers.add(
            src,
            peers.PeerIn(url=recv_settings.public_url, verifier_key=recv.verifier_key),
            lambda _url: _descriptor(recv),
        )
        peers.add(
            recv, peers.PeerIn(url=a.url, verifier_key=src.verifier_key), fed.client.descriptor
        )
        profiler = cProfile.Profile() if profile else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        result = fed.pull("platform-a.demo")
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler is not None and profile:
            profiler.dump_stats(profile)
        fed.client.close()
    assert result.error is None and result.applied == records, result
    src.db.dispose()
    recv.db.dispose()
    return {"wall": records / wall, "cpu": records / cpu}


# The tables a received signal writes, in the order the apply writes them.
_INGEST_TABLES = ("signal", "received_record", "log_entry", "log_node")


def sqlite_floor(db_path: Path, page: int = 1000) -> tuple[float, dict[str, float]]:
    """What SQLite alone costs for the rows a receiver wrote: the signal, received-record, log
    entry and Merkle node rows of `db_path` (a receiver's database after the apply) inserted
    again with the stdlib driver's `executemany` into an empty copy of those tables (same
    indexes, WAL, synchronous=NORMAL as the node), one transaction per `page` records.
    Returns (CPU microseconds per record, the same split by table and commit): with the verify,
    the floor of any receiver that keeps these rows, whatever its Python costs."""
    import sqlite3

    src = sqlite3.connect(db_path)
    names = ",".join(f"'{t}'" for t in _INGEST_TABLES)
    schema = [
        sql
        for (sql,) in src.execute(
            f"SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN ({names})"
        )
    ]
    rows = {t: src.execute(f"SELECT * FROM {t}").fetchall() for t in _INGEST_TABLES}
    src.close()
    n = len(rows["signal"])
    if not n:
        raise ValueError("no signals to replay")
    # Entries and nodes per record are spread evenly over the pages (the log also holds the
    # receiver's own few entries: config, peer pins).
    with tempfile.TemporaryDirectory(prefix="signet-floor-") as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for sql in schema:
            db.execute(sql)
        spent = dict.fromkeys((*_INGEST_TABLES, "commit"), 0.0)
        pages = (n + page - 1) // page
        for k in range(pages):
            db.execute("BEGIN IMMEDIATE")
            for table in _INGEST_TABLES:
                all_rows = rows[table]
                share = all_rows[k * len(all_rows) // pages : (k + 1) * len(all_rows) // pages]
                if not share:
                    continue
                marks = ",".join("?" * len(share[0]))
                t = time.process_time()
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", share)
                spent[table] += time.process_time() - t
            t = time.process_time()
            db.execute("COMMIT")
            spent["commit"] += time.process_time() - t
        db.close()
    split = {k: 1e6 * v / n for k, v in spent.items()}
    return sum(split.values()), split


def apply_ratios(records: int, repeats: int) -> tuple[list[tuple[float, float]], Path]:
    """The receiver's work alone, for a steadier figure on a shared machine: the source's pages
    are built in this process once (`sync.build_page`, as the records endpoint does) and kept as
    JSON; each repeat parses and applies them (`RecordsPage.from_json`, `sync.apply_page`) on a
    fresh receiver, timed in CPU seconds, between two raw verify measurements.
    Returns (records per CPU second, raw verify per CPU second) per repeat, and the last
    receiver's database (for `sqlite_floor`)."""
    from app.federation.pages import RecordsPage
    from app.services import peers, signals, sync
    from app.services.node import open_node
    from app.settings import load_settings

    root = Path(scratch_dir("signet-bench-sync-"))

    def node(origin: str, port: int) -> Any:
        return open_node(
            load_settings(
                origin=origin,
                data_dir=root / origin,
                public_url=f"http://127.0.0.1:{port}",
                background=False,
            )
        )

    src = node("platform-a.demo", 1)
    for start in range(0, records, 1000):
        batch = [
            {"type": "md5", "value": f"{i:032x}", "categories": ["csam"]}
            for i in range(start, min(records, start + 1000))
        ]
        signals.submit_batch(src, batch, None)
    out = []
    for k in range(repeats):
        recv = node(f"receiver-{k}.demo", 2 + k)
        peers.add(
            src,
            peers.PeerIn(url=recv.settings.public_url, verifier_key=recv.verifier_key),
            lambda _url, n=recv: _descriptor(n),
        )
        peers.add(
            recv,
            peers.PeerIn(url=src.settings.public_url, verifier_key=src.verifier_key),
            lambda _url: _descriptor(src),
        )
        pages: list[tuple[int, bytes]] = []
        after = 0
        while True:
            page = sync.build_page(src, recv.origin, after, 1000)
            pages.append((after, page.to_json().encode()))
            after = page.next
            if not page.has_more:
                break
        before = raw_verify_rate()
        applied = 0
        cpu = time.process_time()
        for after, body in pages:
            result = sync.apply_page(recv, src.origin, after, RecordsPage.from_json(body))
            applied += result.applied
        cpu = time.process_time() - cpu
        baseline = (before + raw_verify_rate()) / 2
        assert applied == records, applied
        out.append((records / cpu, baseline))
        recv.db.dispose()
    src.db.dispose()
    return out, root / f"receiver-{repeats - 1}.demo" / "signet.db"


def _descriptor(node: object) -> dict[str, object]:
    from app.api.wellknown import descriptor

    return descriptor(node)  # type: ignore[arg-type]


def retraction_times(rounds: int) -> list[float]:
    from app.demo import _keys, _matches, _nodes, _wait

    root = Path(scratch_dir("signet-bench-sync-"))
    times = []
    with _nodes(root) as nodes, httpx.Client(timeout=10) as http:
        for n in nodes:
            _wait("start", lambda n=n: http.get(n.url + "/healthz").is_success)
            _keys(n)
        for n in nodes:
            for p in nodes:
                if p is not n:
                    http.post(
                        n.url + "/v1/admin/peers",
                        headers=n.headers(n.admin),
                        json={"url": p.url, "verifier_key": p.verifier_key},
                    ).raise_for_status()
        a, *others = nodes
        for i in range(rounds):
            value = f"{i:032x}"
            r = http.post(
                a.url + "/v1/signals",
                headers=a.headers(a.platform),
                json={"signals": [{"type": "md5", "value": value, "categories": ["csam"]}]},
            )
            sid = r.json()["items"][0]["id"]
            for n in others:
                _wait("signal", lambda n=n, v=value: bool(_matches(http, n, "md5", v)))
            t0 = time.monotonic()
            http.post(
                a.url + f"/v1/signals/{sid}/retract",
                headers=a.headers(a.platform),
                json={"reason": "bench"},
            ).raise_for_status()
            for n in others:
                _wait("retraction", lambda n=n, v=value: not _matches(http, n, "md5", v))
            times.append(time.monotonic() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="write a cProfile of the receiver's pull to FILE (slows the pull: figures are"
        " then not comparable)",
    )
    ap.add_argument(
        "--apply-repeats",
        type=int,
        default=3,
        help="repeats of the in-process parse+verify+apply (no HTTP, no source process)",
    )
    args = ap.parse_args()
    print(machine_info())
    applies, receiver_db = (
        apply_ratios(args.records, args.apply_repeats) if args.apply_repeats else ([], None)
    )
    # The baseline is taken right before and right after the pull; their mean is what the pull
    # is compared with (both are printed: a wide gap means the machine's load changed).
    floor_rows: list[dict[str, str]] = []
    if receiver_db is not None:
        floor_us, split = sqlite_floor(receiver_db)
        verify_us = 1e6 / statistics.mean(base for _, base in applies)
        floor_rows = [
            {
                "what": "SQLite alone: the receiver's rows replayed by raw executemany + commit",
                "figure": f"{floor_us:.1f} us/record ("
                + ", ".join(f"{k} {v:.1f}" for k, v in split.items())
                + ")",
            },
            {
                "what": "floor of this design: raw verify + SQLite alone, per core",
                "figure": f"{1e6 / (verify_us + floor_us):,.0f} /s"
                f" ({verify_us / (verify_us + floor_us):.2f}x raw verify)",
            },
        ]
    before = raw_verify_rate()
    rates = pull_rate(args.records, args.profile)
    after = raw_verify_rate()
    baseline = (before + after) / 2
    times = retraction_times(args.rounds)
    print_table(
        [
            {
                "what": "PyNaCl raw Ed25519 verify per CPU second (baseline: before / after)",
                "figure": f"{baseline:,.0f} /s ({before:,.0f} / {after:,.0f})",
            },
            {
                "what": f"pull+verify+apply {args.records:,} records, per receiving core",
                "figure": f"{rates['cpu']:,.0f} /s ({rates['cpu'] / baseline:.2f}x raw verify)",
            },
            *(
                {
                    "what": f"in-process parse+verify+apply, repeat {i + 1} (no HTTP)",
                    "figure": f"{rate:,.0f} /s ({rate / base:.2f}x raw verify {base:,.0f} /s"
                    " measured around it)",
                }
                for i, (rate, base) in enumerate(applies)
            ),
            *floor_rows,
            {
                "what": "pull+verify+apply, wall clock (HTTP + source included)",
                "figure": f"{rates['wall']:,.0f} /s",
            },
            {
                "what": f"retraction stops matching on both peers ({args.rounds} rounds)",
                "figure": f"median {statistics.median(times):.2f} s, max {max(times):.2f} s",
            },
        ]
    )


if __name__ == "__main__":
    main()
