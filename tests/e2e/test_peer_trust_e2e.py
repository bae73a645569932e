"""Issue 9, observation 5 across real `signet serve` processes: an origin removes a peer, and
its next green signal does not reach that peer through a relay."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.test_federation_e2e import key, matches, nodes, start_and_mesh, wait_for

pytestmark = pytest.mark.e2e


def test_removed_peer_gets_nothing_new_through_a_relay(tmp_path: Path) -> None:
    with nodes(tmp_path, "a.test", "b.test", "c.test", SIGNET_SYNC_INTERVAL="2") as (a, b, c):
        everyone = (a, b, c)
        start_and_mesh(*everyone)
        auth = {p.origin: key(p, "submit,match,read") for p in everyone}

        def submit(value: str) -> None:
            body = {
                "signals": [
                    {
                        "type": "md5",
                        "value": value,
                        "categories": ["csam"],
                        "audience": {"tlp": "green", "hops": 1},
                    }
                ]
            }
            httpx.post(a.url + "/v1/signals", headers=auth[a.origin], json=body).raise_for_status()

        submit("c1" * 16)  # before the removal: reaches everyone
        for p in (b, c):
            wait_for(lambda p=p: bool(matches(p, auth[p.origin], "md5", "c1" * 16)))

        a.cli("peers", "remove", "c.test")
        submit("c2" * 16)
        wait_for(lambda: bool(matches(b, auth[b.origin], "md5", "c2" * 16)))
        c.cli("sync", "b.test")
        assert matches(c, auth[c.origin], "md5", "c2" * 16) == []
        # ... while what b relays from others still flows to c.
        own = {"signals": [{"type": "md5", "value": "c3" * 16, "categories": ["csam"]}]}
        httpx.post(b.url + "/v1/signals", headers=auth[b.origin], json=own).raise_for_status()
        wait_for(lambda: bool(matches(c, auth[c.origin], "md5", "c3" * 16)))
        assert matches(c, auth[c.origin], "md5", "c2" * 16) == []
