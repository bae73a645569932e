"""Exchange-log append rate on SQLite, beside raw SHA-256 and raw SQLite inserts (same run),
and inclusion / consistency proof time and database reads at 1M entries.

    .venv/bin/python bench/log_append.py [--entries 100000] [--proof-size 1000000]

Appends go through the real write path: `transaction(node)` (sequencer lock, BEGIN
IMMEDIATE) -> `tx.append()` (RFC 8785 bytes) -> `LogAppender` (leaf + completed subtrees),
one commit per transaction, WAL with synchronous=NORMAL (the node's settings).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

CPU = common.pin_one_core()

from sqlalchemy import event  # noqa: E402

from app.crypto import merkle  # noqa: E402
from app.services import log as exchange_log  # noqa: E402
from app.services.node import open_node  # noqa: E402
from app.services.tx import transaction  # noqa: E402
from app.settings import load_settings  # noqa: E402

# A typical signal entry (a signed md5 record), about the size the log really stores.
RECORD = {
    "kind": "signal",
    "v": 1,
    "id": "01jx0000000000000000000000",
    "version": 1,
    "type": "md5",
    "value": "0" * 32,
    "attrs": {},
    "categories": ["csam"],
    "indicators": [],
    "opinion": "positive",
    "confidence": 80,
    "reviewed": True,
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_until": "2027-01-01T00:00:00Z",
    "audience": {"tlp": "green", "peers": [], "hops": 0},
    "origin": "bench.example",
    "key_id": "0a1b2c3d",
    "signature": "A" * 86 + "==",
}


def leaf_size() -> int:
    from app.crypto.canonical import canonical_json

    return len(
        canonical_json({"kind": "signal", "time": "2026-01-01T00:00:00.000000Z", "record": RECORD})
    )


def canonical_rate(n: int = 20_000) -> float:
    from app.crypto.canonical import canonical_json

    entry = {"kind": "signal", "time": "2026-01-01T00:00:00.000000Z", "record": RECORD}
    start = time.perf_counter()
    for _ in range(n):
        canonical_json(entry)
    return n / (time.perf_counter() - start)


def sha256_rate(size: int, n: int = 200_000) -> float:
    data = [b"\x00" + random.randbytes(size) for _ in range(1000)]
    start = time.perf_counter()
    for i in range(n):
        hashlib.sha256(data[i % 1000]).digest()
    return n / (time.perf_counter() - start)


def sqlite_insert_rate(directory: Path, size: int, n: int) -> float:
    conn = sqlite3.connect(directory / "raw.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (idx INTEGER PRIMARY KEY, kind TEXT, data TEXT)")
    payload = "x" * size
    rows = [(i, "signal", payload) for i in range(n)]
    start = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def append_rate(directory: Path, n: int, per_tx: int) -> float:
    settings = load_settings(
        origin="bench.example", data_dir=directory / f"node{per_tx}", background=False
    )
    node = open_node(settings)
    body = {"record": RECORD}
    start = time.perf_counter()
    done = 0
    while done < n:
        with transaction(node) as tx:
            for _ in range(min(per_tx, n - done)):
                tx.append("signal", body)
        done += per_tx
    rate = n / (time.perf_counter() - start)
    exchange_log.publish_checkpoint(node)  # and the result is a valid log
    node.db.dispose()
    return rate


def concurrent_rate(directory: Path, n: int, threads: int, group: bool) -> float:
    """`threads` submitters, one entry per transaction each, with group commit on or off."""
    import threading

    settings = load_settings(
        origin="bench.example",
        data_dir=directory / f"conc{threads}{group}",
        background=False,
        group_commit=group,
    )
    node = open_node(settings)
    body = {"record": RECORD}
    per = n // threads
    barrier = threading.Barrier(threads + 1)

    def run() -> None:
        barrier.wait()
        for _ in range(per):
            with transaction(node) as tx:
                tx.append("signal", body)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    rate = per * threads / (time.perf_counter() - start)
    with node.db.read() as s:  # every entry landed, in one gap-free sequence
        from app.storage import log as log_store

        size = log_store.log_size(s)
        assert [r.idx for r in log_store.entries(s, 0, size)] == list(range(per * threads))
    node.db.dispose()
    return rate


def proofs_at(directory: Path, size: int) -> list[dict[str, object]]:
    """Build a `size`-leaf log's node table directly, then time proofs and count reads."""
    settings = load_settings(origin="bench.example", data_dir=directory / "big", background=False)
    node = open_node(settings)
    node.db.dispose()
    t0 = time.perf_counter()
    tree = merkle.MerkleTree()
    rows: list[tuple[int, int, bytes]] = []
    for i in range(size):
        for level, idx, h in merkle.nodes_completed_by_append(i, b"%d" % i, tree.get):
            if level == len(tree._levels):
                tree._levels.append([])
            tree._levels[level].append(h)
            rows.append((level, idx, h))
    conn = sqlite3.connect(directory / "big" / "signet.db")
    with conn:
        conn.executemany("INSERT INTO log_node (level, idx, hash) VALUES (?, ?, ?)", rows)
        conn.execute("UPDATE log_head SET size = ? WHERE id = 1", (size,))
    conn.close()
    print(f"built a {size:,}-leaf node table in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    node = open_node(settings, migrate=False)
    reads = 0

    def count(*_: object) -> None:
        nonlocal reads
        reads += 1

    event.listen(node.db.engine, "before_cursor_execute", count)
    rng = random.Random(1)
    out = []
    for name, make in (
        ("inclusion", lambda: exchange_log.inclusion_proof(node, rng.randrange(size), size)),
        (
            "consistency",
            lambda: exchange_log.consistency_proof(node, rng.randrange(1, size), size),
        ),
    ):
        make()  # warm
        n = 200
        reads = 0
        start = time.perf_counter()
        for _ in range(n):
            make()
        elapsed = time.perf_counter() - start
        out.append(
            {
                "proof at 1M": name,
                "time per proof": f"{elapsed / n * 1e3:.2f} ms",
                "SQL statements per proof": f"{reads / n:.1f}",
                "hashes": str(len(make()[1] if name == "inclusion" else make())),
            }
        )
    # Check one of each against the in-memory tree: the numbers are for correct proofs.
    root = tree.root()
    _, proof = exchange_log.inclusion_proof(node, 12345, size)
    merkle.verify_inclusion(tree.leaf_hash(12345), 12345, size, proof, root)
    node.db.dispose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument(
        "--entries-single",
        type=int,
        default=20_000,
        help="entries for the one-entry-per-transaction run (it is the slow one)",
    )
    p.add_argument("--proof-size", type=int, default=1_000_000)
    args = p.parse_args()
    size = leaf_size()
    print(common.machine_info({"sqlite": sqlite3.sqlite_version, "leaf bytes": str(size)}))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sha = sha256_rate(size)
        raw = sqlite_insert_rate(d, size, args.entries)
        jcs = canonical_rate()
        rows = [
            {
                "what": "RFC 8785 bytes of an entry (rfc8785, pure Python)",
                "per second": common.fmt_rate(jcs),
            },
            {"what": "raw SHA-256 of a leaf (hashlib)", "per second": common.fmt_rate(sha)},
            {
                "what": "raw SQLite insert, executemany, one transaction",
                "per second": common.fmt_rate(raw),
            },
        ]
        results = {}
        for per_tx, n in ((100, args.entries), (1, args.entries_single)):
            rate = append_rate(d, n, per_tx)
            results[per_tx] = rate
            rows.append(
                {
                    "what": f"log append of {n:,}, {per_tx} per transaction",
                    "per second": common.fmt_rate(rate),
                }
            )
        for group in (False, True):
            for threads in (1, 16):
                n = args.entries_single
                rate = concurrent_rate(d, n, threads, group)
                results[f"{threads} submitters, group commit {'on' if group else 'off'}"] = rate
                rows.append(
                    {
                        "what": f"log append of {n:,}, 1 per transaction, {threads} concurrent "
                        f"submitter{'s' if threads > 1 else ''}, group commit "
                        f"{'on' if group else 'off'}",
                        "per second": common.fmt_rate(rate),
                    }
                )
        common.print_table(rows)
        print()
        common.print_table(proofs_at(d, args.proof_size))
        print(
            json.dumps({"append_per_s": results, "sha256_per_s": sha, "sqlite_insert_per_s": raw})
        )


if __name__ == "__main__":
    main()
