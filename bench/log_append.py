"""Exchange-log append rate on SQLite, beside raw SHA-256, raw SQLite inserts and a raw sqlite3
loop of the same statements (same run), and inclusion / consistency proof time and database
reads at 1M entries.

    .venv/bin/python bench/log_append.py [--entries 100000] [--proof-size 1000000]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

Appends go through the real write path: `transaction(node)` (sequencer lock, BEGIN
IMMEDIATE) -> `tx.append()` (RFC 8785 bytes) -> `LogAppender` (leaf + completed subtrees),
one commit per transaction, WAL with synchronous=NORMAL (the node's settings). Rates are given
per wall second and per CPU second of this process (pinned to one core, so CPU seconds are
what a shared machine cannot take away). With `--postgres`, the one-per-transaction cases are
run again on a fresh database of that server (created and dropped here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


Rate = tuple[float, float]  # (per wall second, per CPU second of this process)


class Timer:
    """Wall and process CPU time of a block; `rate(n)` -> (n per wall s, n per CPU s)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def rate(self, n: int) -> Rate:
        return n / self.wall, n / self.cpu


def bench_settings(directory: Path, name: str, postgres: str | None, **kw: Any) -> Any:
    url = pg_database(postgres, name) if postgres else ""
    return load_settings(
        origin="bench.example",
        data_dir=directory / name,
        background=False,
        database_url=url,
        **kw,
    )


def pg_database(admin_url: str, name: str) -> str:
    """A fresh, empty PostgreSQL database for one run (dropped by `drop_pg_databases`)."""
    from sqlalchemy import create_engine, make_url, text

    admin = make_url("postgresql+psycopg://" + admin_url.split("://", 1)[1])
    db_name = f"signet_bench_log_{name}_{os.getpid()}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    engine.dispose()
    _PG_CREATED.append((admin.render_as_string(hide_password=False), db_name))
    return admin.set(database=db_name).render_as_string(hide_password=False)


_PG_CREATED: list[tuple[str, str]] = []


def drop_pg_databases() -> None:
    from sqlalchemy import create_engine, text

    for admin, db_name in _PG_CREATED:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        engine.dispose()


def raw_loop_rate(directory: Path, n: int) -> Rate:
    """The floor for one entry per transaction: a plain sqlite3 loop of the statements the
    node runs (BEGIN IMMEDIATE, read the head, insert the entry and its Merkle nodes, move the
    head, COMMIT), on a node's own schema and PRAGMAs, with the entry bytes made once and the
    Merkle frontier kept in a dict. What the node adds on top is Python: SQLAlchemy, building
    and canonicalising the entry, the appender's bookkeeping."""
    settings = load_settings(origin="bench.example", data_dir=directory / "raw", background=False)
    open_node(settings).db.dispose()  # migrated schema, then out of the way
    conn = sqlite3.connect(directory / "raw" / "signet.db", isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    from app.crypto.canonical import canonical_json

    data = canonical_json(
        {"kind": "signal", "time": "2026-01-01T00:00:00.000000Z", "record": RECORD}
    )
    text_data = data.decode()
    frontier: dict[tuple[int, int], bytes] = {}
    with Timer() as t:
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            (size,) = conn.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
            conn.execute(
                "INSERT INTO log_entry (idx, kind, data, salt, created_at) VALUES (?, ?, ?, ?, ?)",
                (size, "signal", text_data, None, "2026-01-01 00:00:00.000000"),
            )
            rows = merkle.nodes_completed_by_append(size, data, lambda lv, i: frontier[(lv, i)])
            for level, i, _h in rows[:-1]:
                del frontier[(level, i - 1)]
            frontier[rows[-1][:2]] = rows[-1][2]
            conn.executemany("INSERT INTO log_node (level, idx, hash) VALUES (?, ?, ?)", rows)
            conn.execute("UPDATE log_head SET size = ? WHERE id = 1", (size + 1,))
            conn.execute("COMMIT")
    conn.close()
    return t.rate(n)


def append_rate(directory: Path, n: int, per_tx: int, postgres: str | None = None) -> Rate:
    node = open_node(bench_settings(directory, f"node{per_tx}", postgres))
    body = {"record": RECORD}
    done = 0
    with Timer() as t:
        while done < n:
            with transaction(node) as tx:
                for _ in range(min(per_tx, n - done)):
                    tx.append("signal", body)
            done += per_tx
    exchange_log.publish_checkpoint(node)  # and the result is a valid log
    node.db.dispose()
    return t.rate(n)


def where_the_time_goes(directory: Path, n: int) -> dict[str, float]:
    """CPU time of one single-entry transaction, split: an empty write transaction (pool
    checkout, BEGIN IMMEDIATE, the lock read, COMMIT, check-in), building one entry (RFC 8785
    bytes, leaf and node hashes, the appender's buffers), and the rest (writing the rows
    and committing them)."""
    node = open_node(bench_settings(directory, "parts", None))
    body = {"record": RECORD}

    def empty() -> None:
        for _ in range(n):
            with transaction(node):
                pass

    def build() -> None:  # n entries in one transaction: its own cost is spread thin
        with transaction(node) as tx:
            for _ in range(n):
                tx.append("signal", body)

    def full() -> None:
        for _ in range(n):
            with transaction(node) as tx:
                tx.append("signal", body)

    us = {}
    for name, fn in (("empty", empty), ("build", build), ("full", full)):
        fn()  # warm
        with Timer() as t:
            fn()
        us[name] = t.cpu / n * 1e6
    node.db.dispose()
    us["rows"] = us["full"] - us["empty"] - us["build"]
    return us


def concurrent_rate(
    directory: Path, n: int, threads: int, group: bool, postgres: str | None = None
) -> tuple[Rate, int]:
    """`threads` submitters, one entry per transaction each, with group commit on or off;
    returns the rates and the number of database commits."""
    import threading

    node = open_node(
        bench_settings(directory, f"conc{threads}{group}", postgres, group_commit=group)
    )
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

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
    event.listen(node.db.engine, "commit", count)
    barrier.wait()
    with Timer() as timer:
        for t in pool:
            t.join()
    event.remove(node.db.engine, "commit", count)
    with node.db.read() as s:  # every entry landed, in one gap-free sequence
        from app.storage import log as log_store

        size = log_store.log_size(s)
        assert [r.idx for r in log_store.entries(s, 0, size)] == list(range(per * threads))
    node.db.dispose()
    return timer.rate(per * threads), commits


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


def rate_row(what: str, rate: Rate, floor: Rate | None = None) -> dict[str, str]:
    row = {
        "what": what,
        "per wall second": common.fmt_rate(rate[0]),
        "per CPU second": common.fmt_rate(rate[1]),
    }
    if floor is not None:
        row["CPU ÷ raw loop"] = f"{rate[1] / floor[1]:.2f}"
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument(
        "--entries-single",
        type=int,
        default=20_000,
        help="entries for the one-entry-per-transaction runs (they are the slow ones)",
    )
    p.add_argument("--proof-size", type=int, default=1_000_000)
    p.add_argument(
        "--postgres",
        default="",
        help="also run the one-per-transaction cases on a fresh database of this server",
    )
    args = p.parse_args()
    size = leaf_size()
    print(common.machine_info({"sqlite": sqlite3.sqlite_version, "leaf bytes": str(size)}))
    n1 = args.entries_single
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sha = sha256_rate(size)
        raw = sqlite_insert_rate(d, size, args.entries)
        jcs = canonical_rate()
        loop = raw_loop_rate(d, n1)
        rows = [
            {
                "what": "RFC 8785 bytes of an entry (rfc8785, pure Python)",
                "per wall second": common.fmt_rate(jcs),
            },
            {"what": "raw SHA-256 of a leaf (hashlib)", "per wall second": common.fmt_rate(sha)},
            {
                "what": "raw SQLite insert, executemany, one transaction",
                "per wall second": common.fmt_rate(raw),
            },
            rate_row(f"raw sqlite3 loop of {n1:,}, the node's statements, 1 per transaction", loop),
        ]
        results: dict[str, object] = {"raw loop": loop}
        for per_tx, n in ((100, args.entries), (1, n1)):
            rate = append_rate(d, n, per_tx)
            results[str(per_tx)] = rate
            rows.append(rate_row(f"log append of {n:,}, {per_tx} per transaction", rate, loop))
        groups: dict[str, float] = {}
        for group in (False, True):
            for threads in (1, 16):
                rate, commits = concurrent_rate(d, n1, threads, group)
                label = f"{threads} submitters, group commit {'on' if group else 'off'}"
                results[label] = rate
                groups[label] = n1 / max(commits, 1)
                row = rate_row(
                    f"log append of {n1:,}, 1 per transaction, {threads} concurrent "
                    f"submitter{'s' if threads > 1 else ''}, group commit "
                    f"{'on' if group else 'off'}",
                    rate,
                    loop,
                )
                row["entries per commit"] = f"{groups[label]:.1f}"
                rows.append(row)
        if args.postgres:
            try:
                # 12, not 16, without group commit: each waiting writer holds one of the
                # pool's 15 connections, and a 16th starves for one (QueuePool timeout).
                for what, make in (
                    ("1 submitter", lambda: (append_rate(d, n1, 1, args.postgres), n1)),
                    (
                        "12 submitters, group commit off",
                        lambda: concurrent_rate(d, n1, 12, False, args.postgres),
                    ),
                    (
                        "16 submitters, group commit on",
                        lambda: concurrent_rate(d, n1, 16, True, args.postgres),
                    ),
                ):
                    rate, commits = make()
                    results[f"PostgreSQL, {what}"] = rate
                    row = rate_row(
                        f"PostgreSQL: log append of {n1:,}, 1 per transaction, {what}", rate
                    )
                    row["entries per commit"] = f"{n1 / max(commits, 1):.1f}"
                    rows.append(row)
            finally:
                drop_pg_databases()
        common.print_table(rows)
        print()
        us = where_the_time_goes(d, min(n1, 3000))
        # The 16-submitter group-commit run, per entry: its CPU minus building the entry and
        # its share of one transaction's cost is what the threads' hand-offs cost (each caller
        # is woken twice: for its turn, and when its group has committed).
        label = "16 submitters, group commit on"
        per_entry = 1e6 / results[label][1]  # type: ignore[index]
        share = (us["empty"] + us["rows"]) / groups[label]
        common.print_table(
            [
                {
                    "CPU µs per entry": "empty write transaction (SQLAlchemy connection, "
                    "BEGIN IMMEDIATE, lock read, COMMIT)",
                    "1 per transaction": f"{us['empty']:.0f}",
                    "16 submitters, group commit": f"{us['empty'] / groups[label]:.0f}",
                },
                {
                    "CPU µs per entry": "building the entry (RFC 8785, hashes, buffers)",
                    "1 per transaction": f"{us['build']:.0f}",
                    "16 submitters, group commit": f"{us['build']:.0f}",
                },
                {
                    "CPU µs per entry": "writing its rows and committing them",
                    "1 per transaction": f"{us['rows']:.0f}",
                    "16 submitters, group commit": f"{us['rows'] / groups[label]:.0f}",
                },
                {
                    "CPU µs per entry": "the rest: threads taking turns, waiting for the commit",
                    "1 per transaction": "",
                    "16 submitters, group commit": f"{per_entry - us['build'] - share:.0f}",
                },
                {
                    "CPU µs per entry": "total",
                    "1 per transaction": f"{us['full']:.0f}",
                    "16 submitters, group commit": f"{per_entry:.0f}",
                },
            ]
        )
        print()
        common.print_table(proofs_at(d, args.proof_size))
        print(
            json.dumps({"append_per_s": results, "sha256_per_s": sha, "sqlite_insert_per_s": raw})
        )


if __name__ == "__main__":
    main()
