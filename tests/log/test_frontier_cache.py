"""The appender's Merkle frontier cache (app.storage.log.LogAppender) and the lean write path:
a process remembers the right edge of the log it last committed, but another process (here: a
second Database object on the same file / PostgreSQL database) appending meanwhile must never
make it build a wrong tree. Also: group-commit members that use the session get a savepoint of
their own, members that only append are undone by the appender alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from app.services.node import Node, open_node
from app.services.tx import transaction
from app.settings import Settings
from app.storage.models import NonceRow

from .test_concurrency import check_linear_log


class Boom(Exception):
    pass


@pytest.fixture
def two_nodes(make_settings: Callable[..., Settings]) -> Iterator[tuple[Node, Node]]:
    """Two nodes (two engines, two frontier caches) on one database, like two processes."""
    settings = make_settings()
    a = open_node(settings)
    b = open_node(settings, migrate=False)
    assert a.db is not b.db
    yield a, b
    a.db.dispose()
    b.db.dispose()


class NodeReads:
    """Counts reads of log_node (the frontier's) sent through a node's engine."""

    def __init__(self, node: Node) -> None:
        self.engine = node.db.engine
        self.count = 0

    def _on(self, _c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM log_node" in statement:
            self.count += 1

    def __enter__(self) -> NodeReads:
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)


def append(node: Node, n: int, tag: str) -> None:
    with transaction(node) as tx:
        for k in range(n):
            tx.append("test", {"who": tag, "k": k})


def test_a_steady_writer_reads_no_node(node: Node) -> None:
    append(node, 3, "warm")  # the first append reads the (empty) frontier, then caches it
    with NodeReads(node) as reads:
        for i in range(20):
            append(node, 1 + i % 3, "steady")
    assert reads.count == 0
    check_linear_log(node)


def test_another_writer_in_between_invalidates_the_cache(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    # Sizes chosen so the caches go stale at different shapes of the right edge.
    for step, (na, nb) in enumerate([(1, 1), (3, 2), (1, 4), (7, 1), (2, 9), (5, 5), (1, 16)]):
        append(a, na, f"a{step}")
        append(a, 1, f"a{step}'")  # a's cache is now current ...
        with NodeReads(b) as reads:
            append(b, nb, f"b{step}")  # ... b's is stale: b read the frontier once
        assert reads.count == 1
        with NodeReads(a) as reads:
            append(a, 1, f"a{step}''")  # and so is a's now
        assert reads.count == 1
    check_linear_log(a)
    check_linear_log(b)


def test_concurrent_writers_in_two_processes_keep_one_tree(two_nodes: tuple[Node, Node]) -> None:
    errors: list[BaseException] = []

    def run(node: Node, tag: str) -> None:
        try:
            for i in range(25):
                append(node, 1 + i % 2, tag)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(n, f"{tag}{t}"))
        for n, tag in zip(two_nodes, "ab", strict=True)
        for t in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    check_linear_log(two_nodes[0], 4 * sum(1 + i % 2 for i in range(25)))


def test_a_rolled_back_transaction_leaves_the_cache_alone(node: Node) -> None:
    append(node, 2, "kept")
    cached = node.db.log_frontier
    assert cached is not None and cached[0] == 2
    with pytest.raises(Boom), transaction(node) as tx:
        tx.append("test", {"who": "lost"})
        raise Boom()
    assert node.db.log_frontier == cached
    with NodeReads(node) as reads:
        append(node, 3, "after")
    assert reads.count == 0
    check_linear_log(node, 5)


def test_a_failed_commit_leaves_the_cache_alone(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(node, 1, "kept")
    cached = node.db.log_frontier
    real = node.db.write_tx

    class FailingCommit:
        def __init__(self) -> None:
            self.cm = real()

        def __enter__(self) -> object:
            return self.cm.__enter__()

        def __exit__(self, *exc: object) -> None:
            self.cm.__exit__(Boom, Boom(), None)  # rolled back after the rows were written
            raise Boom("commit failed")

    monkeypatch.setattr(node.db, "write_tx", FailingCommit)
    with pytest.raises(Boom), transaction(node) as tx:
        tx.append("test", {"who": "lost"})
    monkeypatch.undo()
    assert node.db.log_frontier == cached
    append(node, 2, "after")
    check_linear_log(node, 3)


def test_session_is_opened_only_when_used(node: Node) -> None:
    with transaction(node) as tx:
        tx.append("test", {"who": "log only"})
        assert not tx._wt.has_session
    with transaction(node) as tx:
        tx.session.add(NonceRow(keyid="k", nonce="n", expires_at=1))
        tx.append("test", {"who": "with a row"})
        assert tx._wt.has_session
    with node.db.read() as s:
        assert s.execute(select(NonceRow.nonce)).scalars().all() == ["n"]
    check_linear_log(node, 2)


@pytest.fixture
def group_node(make_settings: Callable[..., Settings]) -> Iterator[Node]:
    n = open_node(make_settings(group_commit=True))
    yield n
    n.db.dispose()


def test_group_members_rows_and_entries_are_all_or_nothing(group_node: Node) -> None:
    """Members that write rows through the session take a savepoint; members that only append
    take none. A failing member of either kind leaves neither rows nor entries behind."""
    node = group_node
    kept: set[str] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for n in range(6):
                name = f"{t}-{n}"
                uses_session = (t + n) % 2 == 0
                fail = (t + 2 * n) % 5 == 0
                try:
                    with transaction(node) as tx:
                        tx.append("test", {"who": name})
                        if uses_session:
                            tx.session.add(NonceRow(keyid="k", nonce=name, expires_at=1))
                            tx.session.flush()
                        time.sleep(0.001)  # others queue up: groups form
                        if fail:
                            raise Boom()
                except Boom:
                    continue
                with lock:
                    kept.add(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[0]
    check_linear_log(node, len(kept))
    import json

    from app.storage import log as log_store

    with node.db.read() as s:
        entries = {json.loads(r.data)["who"] for r in log_store.entries(s, 0, len(kept))}
        nonces = set(s.execute(select(NonceRow.nonce)).scalars())
    assert entries == kept
    assert nonces == {k for k in kept if sum(map(int, k.split("-"))) % 2 == 0}
