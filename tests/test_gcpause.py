"""`app.gcpause.paused`: the collector is off inside, back on after (also on an exception),
left off if it was off, and overlapping pauses from several threads end with it on."""

from __future__ import annotations

import gc
import threading

import pytest

from app import gcpause

# Each test starts with the collector on (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("collector_on")


def test_off_inside_on_after() -> None:
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_on_after_an_exception() -> None:
    with pytest.raises(RuntimeError), gcpause.paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_left_off_if_it_was_off() -> None:
    gc.disable()
    with gcpause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_across_threads() -> None:
    inside = threading.Barrier(4)
    release = threading.Event()
    states: list[bool] = []

    def work() -> None:
        with gcpause.paused():
            inside.wait()
            release.wait()
            states.append(gc.isenabled())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    inside.wait()
    assert not gc.isenabled()
    release.set()
    for t in threads:
        t.join()
    assert states == [False, False, False]
    assert gc.isenabled()


def test_a_page_apply_leaves_the_collector_on() -> None:
    from app.federation.errors import MalformedPage
    from app.federation.pages import RecordsPage

    with pytest.raises(MalformedPage):
        RecordsPage.from_json(b'{"records": [], "next": 0, "checkpoint": "x", "x": 1}')
    assert gc.isenabled()
