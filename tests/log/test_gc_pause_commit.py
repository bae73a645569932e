"""`Tx.pause_gc_until_committed` (a page of peer records, app/services/sync.py): the collector
stays off through the log rows and the commit, and is back on once the transaction is over,
committed or rolled back, alone or in a group commit."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from app.services.node import Node, open_node
from app.services.tx import transaction
from app.settings import Settings
from app.storage.log import LogAppender


@pytest.fixture(params=[False, True], ids=["alone", "group"])
def gnode(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Iterator[Node]:
    n = open_node(make_settings(group_commit=request.param))
    yield n
    n.db.dispose()


# Each test starts with the collector on (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("collector_on")


def test_paused_through_the_log_rows_and_the_commit(
    gnode: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    close = LogAppender.close

    def watching_close(self: LogAppender) -> None:
        seen.append(gc.isenabled())
        close(self)

    monkeypatch.setattr(LogAppender, "close", watching_close)
    with transaction(gnode) as tx:
        assert gc.isenabled()  # not paused unless asked
        tx.pause_gc_until_committed()
        tx.pause_gc_until_committed()  # once is enough; twice changes nothing
        assert not gc.isenabled()
        tx.append("test", {"n": 1})
    assert seen and not any(seen)
    assert gc.isenabled()
    with transaction(gnode) as tx:  # one that does not ask: its body runs with it on
        assert gc.isenabled()
        tx.append("test", {"n": 2})
    assert not seen[-1]  # the log rows and commit of any transaction are paused
    assert gc.isenabled()


def test_back_on_after_a_rollback(gnode: Node) -> None:
    with pytest.raises(RuntimeError), transaction(gnode) as tx:
        tx.pause_gc_until_committed()
        tx.append("test", {"n": 1})
        raise RuntimeError("boom")
    assert gc.isenabled()
    with transaction(gnode) as tx:  # the next transaction works as usual
        tx.append("test", {"n": 2})
    assert gc.isenabled()


def test_left_off_if_it_was_off(gnode: Node) -> None:
    gc.disable()
    with transaction(gnode) as tx:
        tx.pause_gc_until_committed()
        tx.append("test", {"n": 1})
    assert not gc.isenabled()
