"""GET /v1/admin/leases: which process of the node runs the pull loops (issue 15: several workers
and hosts share one pull lease; an operator had no way to see its holder but reading the table)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.services.lease import Lease
from app.services.node import Node


def test_leases_name_the_holder_and_whether_it_is_this_process(
    client: Any, node: Node, make_key: Callable[..., dict[str, str]]
) -> None:
    admin = make_key("admin")
    assert client.get("/v1/admin/leases", headers=make_key("read")).status_code == 403
    assert client.get("/v1/admin/leases", headers=admin).json() == []  # nobody took one yet

    other = Lease(node.db, "pull", ttl=6.0)  # another worker or host
    assert other.try_acquire()
    (row,) = client.get("/v1/admin/leases", headers=admin).json()
    assert row["name"] == "pull" and row["holder"] == other.me
    assert row["live"] is True and row["this_process"] is False and row["generation"] == 1
    assert row["expires_at"] is not None

    other.release()  # a clean stop; this process's own lease takes it over
    mine: Lease = client.app.state.federation.lease
    assert mine.try_acquire()
    (row,) = client.get("/v1/admin/leases", headers=admin).json()
    assert row["holder"] == mine.me and row["this_process"] is True
    assert row["generation"] == 2

    mine.release()
    (row,) = client.get("/v1/admin/leases", headers=admin).json()
    assert row["live"] is False and row["expires_at"] is None and row["this_process"] is False
