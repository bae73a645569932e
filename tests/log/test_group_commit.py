"""Group commit: concurrent writers share sequencer transactions, yet each one's work is
all-or-nothing, the log stays linear and gap-free, and nothing returns before it is durable."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from app.services import tx as tx_module
from app.services.node import Node, open_node
from app.services.tx import transaction
from app.settings import Settings
from app.storage import log as log_store

from .test_concurrency import check_linear_log

THREADS = 16
ROUNDS = 6


class Boom(Exception):
    pass


@pytest.fixture
def node(make_settings: Callable[..., Settings]) -> Iterator[Node]:
    n = open_node(make_settings(group_commit=True))
    yield n
    n.db.dispose()


def test_concurrent_writers_share_commits_and_failures_stay_private(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert node.settings.group_commit
    commits: list[int] = []
    real = tx_module.GroupCommit._commit_if_last

    def counting(self: tx_module.GroupCommit, group: tx_module._Group) -> None:
        before = group.done.is_set()
        real(self, group)
        if group.done.is_set() and not before:
            commits.append(group.members)

    monkeypatch.setattr(tx_module.GroupCommit, "_commit_if_last", counting)
    errors: list[BaseException] = []
    kept: set[tuple[int, int]] = set()
    returned_durable: list[bool] = []

    def worker(t: int) -> None:
        try:
            for n in range(ROUNDS):
                fail = (t + n) % 5 == 0
                try:
                    with transaction(node) as tx:
                        for k in range(1 + (n % 2)):
                            tx.append("test", {"thread": t, "n": n, "k": k})
                        time.sleep(0.002)  # work inside the transaction: others queue up
                        if fail:
                            raise Boom()
                except Boom:
                    continue
                kept.add((t, n))
                # Returned means committed: a fresh session sees this caller's entries.
                with node.db.read() as s:
                    size = log_store.log_size(s)
                    rows = log_store.entries(s, 0, size)
                mine = {(d["thread"], d["n"]) for d in (json.loads(r.data) for r in rows)}
                returned_durable.append((t, n) in mine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors[0]
    assert all(returned_durable) and len(returned_durable) == len(kept)
    expected = sum(1 + (n % 2) for (_t, n) in kept)
    check_linear_log(node, expected)  # gap-free, proofs verify: failed work left no trace
    with node.db.read() as s:
        rows = log_store.entries(s, 0, expected)
    got = {(d["thread"], d["n"]) for d in (json.loads(r.data) for r in rows)}
    assert got == kept
    # Sharing happened: fewer commits than successful transactions.
    assert sum(commits) == len(kept)
    assert len(commits) < len(kept), commits


def test_failed_commit_fails_every_member(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the shared commit fails, no member may return as if it had succeeded."""
    with transaction(node) as tx:
        tx.append("test", {"before": True})
    gate = threading.Event()
    results: list[str] = []

    def first() -> None:
        try:
            with transaction(node) as tx:
                tx.append("test", {"who": 1})
                gate.wait(10)  # hold the turn until the second caller is waiting for it
            results.append("ok")
        except BaseException as exc:
            results.append(type(exc).__name__)

    real_write = node.db.write_tx

    class Exploding:
        def __init__(self) -> None:
            self.cm = real_write()

        def __enter__(self) -> object:
            return self.cm.__enter__()

        def __exit__(self, *exc: object) -> None:
            self.cm.__exit__(Boom, Boom(), None)  # roll back
            raise Boom("commit failed")

    monkeypatch.setattr(node.db, "write_tx", Exploding)
    t1 = threading.Thread(target=first)
    t1.start()
    time.sleep(0.2)

    def second() -> None:
        try:
            with transaction(node) as tx:
                tx.append("test", {"who": 2})
            results.append("ok")
        except BaseException as exc:
            results.append(type(exc).__name__)

    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.2)
    gate.set()
    t1.join(30)
    t2.join(30)
    monkeypatch.undo()
    assert results == ["Boom", "Boom"]
    check_linear_log(node, 1)


def test_a_lone_writer_never_waits_for_company(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The linger before a group's commit (a yield of the GIL, for writers on their way back)
    is for concurrent writers only: one writer after another commits straight away."""
    yields: list[float] = []
    monkeypatch.setattr(tx_module.time, "sleep", lambda s: yields.append(s))
    for i in range(20):
        with transaction(node) as tx:
            tx.append("test", {"n": i})
    assert yields == []
    with node.db.read() as session:
        assert log_store.log_size(session) >= 20
