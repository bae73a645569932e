"""Each feed request walks a bounded stretch of the log, and paging still delivers everything.

The audience and type conditions have no index, so a key that may read none of a node's
signals made every request read them all (10 s a page at 5M signals; StopNCII's type filter
also sorted every pdq and md5 signal, 8 s). A request now looks at most `_SCAN_WINDOW` log
positions past its cursor; a stretch with nothing for the key gives an empty page with `more`.
The window is shrunk to 3 here so that a few signals span many windows.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.feeds.helpers import signal, submit
from tests.feeds.test_feeds_api import _changes_all, _collections, _fn_key, _taxii_all

WINDOW = 3


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.services import feeds

    monkeypatch.setattr(feeds, "_SCAN_WINDOW", WINDOW)


def _mixed(client: Any, auth: dict[str, str]) -> list[str]:
    """Green signals (which a non-member key may not read) with a few clear ones between:
    returns the clear ones' ids, in the order they were published."""
    clear = []
    for i in range(4):
        submit(client, auth, *(signal("md5", f"green-{i}-{j}", "green") for j in range(5)))
        (one,) = submit(client, auth, signal("pdq", f"clear-{i}", "clear"))
        clear.append(one)
    submit(client, auth, *(signal("md5", f"green-tail-{j}", "green") for j in range(5)))
    return clear


def test_a_key_that_reads_nothing_gets_bounded_empty_pages(
    client: Any, auth: dict[str, str], make_key: Any, small_window: None
) -> None:
    submit(client, auth, *(signal("md5", f"green-{j}", "green") for j in range(10)))
    feed = make_key("feed")  # not a member: green is not for it
    r = client.get("/v1/changes", params={"after": -1, "limit": 4}, headers=feed)
    body = r.json()
    # The first request looked at the first few positions only, found nothing there, and says
    # go on from the end of that stretch (the feed starts after position 0).
    assert r.status_code == 200 and body["records"] == [] and body["more"] is True
    assert body["next"] == WINDOW
    assert _changes_all(client, feed) == []  # and paging on ends, having found nothing


def test_paging_through_windows_delivers_every_record_once_in_order(
    client: Any, auth: dict[str, str], make_key: Any, small_window: None
) -> None:
    clear = _mixed(client, auth)
    feed = make_key("feed")
    changes = _changes_all(client, feed)
    assert [c["record"]["id"] for c in changes] == clear
    seqs = [c["seq"] for c in changes]
    assert seqs == sorted(set(seqs))

    taxii = _taxii_all(client, feed, _collections(client, feed)["all"])
    assert len(taxii) == len(clear) == len({o["id"] for o in taxii})

    member = make_key("feed", member=True)  # green too: 25 md5 + 4 pdq
    assert len(_changes_all(client, member)) == 29


def test_stopncii_pages_through_windows(
    client: Any, auth: dict[str, str], make_key: Any, small_window: None
) -> None:
    clear = _mixed(client, auth)
    headers = _fn_key(make_key("feed"))
    records, token, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"startTimestamp": 10, "pageSize": 2}
        if token:
            params["nextPageToken"] = token
        r = client.get("/stopncii/v1/FetchHashes", params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        records += body["hashRecords"]
        pages += 1
        assert pages < 200
        if not body["hasMoreRecords"]:
            break
        token = body["nextPageToken"]
    assert len(records) == len(clear) and pages > len(clear)  # empty stretches paged past
