"""Several nodes in one process: each a FastAPI app behind a TestClient, reaching the others
through those clients (no sockets). The first node's database is `db_url` (SQLite and
PostgreSQL); the others use SQLite files, since one PostgreSQL test database holds one node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services import apikeys
from app.services.federation import Federation
from app.services.node import Node, open_node
from app.settings import load_settings

PDQ = "f" * 60 + "0000"


@dataclass
class TNode:
    origin: str
    url: str
    node: Node
    client: TestClient
    admin: dict[str, str]
    platform: dict[str, str]

    @property
    def fed(self) -> Federation:
        fed: Federation = self.client.app.state.federation  # type: ignore[attr-defined]
        return fed

    def add_peer(self, other: TNode, policy: str = "") -> Any:
        r = self.client.post(
            "/v1/admin/peers",
            headers=self.admin,
            json={"url": other.url, "verifier_key": other.node.verifier_key, "policy": policy},
        )
        assert r.status_code == 201, r.text
        return r.json()

    def submit(self, **signal: Any) -> str:
        body = {"categories": ["csam"], **signal}
        r = self.client.post("/v1/signals", headers=self.platform, json={"signals": [body]})
        assert r.status_code == 200, r.text
        item = r.json()["items"][0]
        assert item["status"] == "created", item
        return str(item["id"])

    def match(self, type_: str, value: str) -> list[dict[str, Any]]:
        # Workers follow commits through the index; refresh so the test need not wait for it.
        r = self.client.post(
            "/v1/match", headers=self.platform, json={"queries": [{"type": type_, "value": value}]}
        )
        assert r.status_code == 200, r.text
        return list(r.json()["results"][0]["matches"])

    def pull(self, peer: TNode) -> Any:
        result = self.fed.pull(peer.origin)
        assert result.error is None, result.error
        self.refresh()
        return result

    def refresh(self) -> None:
        for hook in self.node.after_commit:
            if getattr(hook, "__name__", "") == "refresh":
                hook()

    def log_entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        import json

        from app.storage import log as log_store

        with self.node.db.read() as session:
            size = log_store.log_size(session)
            rows = log_store.entries(session, 0, size)
        out = [json.loads(r.data) for r in rows]
        return [e for e in out if kind is None or e["kind"] == kind]


@pytest.fixture
def make_nodes(tmp_path: Path, db_url: str) -> Iterator[Callable[..., list[TNode]]]:
    stack = ExitStack()
    registry: dict[str, httpx.Client] = {}

    def make(*origins: str, **extra: Any) -> list[TNode]:
        nodes = []
        for i, origin in enumerate(origins):
            url = f"http://{origin}"
            settings = load_settings(
                origin=origin,
                data_dir=tmp_path / origin,
                database_url=db_url if i == 0 else f"sqlite:///{tmp_path / origin}.db",
                public_url=url,
                background=False,
                index_poll_interval=0.1,
                **extra,
            )
            node = open_node(settings)
            stack.callback(node.db.dispose)
            app = create_app(settings, node=node, peer_clients=registry)
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            registry[url] = client
            admin = apikeys.create(node, "admin", ["admin"]).key
            platform = apikeys.create(node, "platform", ["submit", "match", "read", "feedback"]).key
            nodes.append(
                TNode(
                    origin,
                    url,
                    node,
                    client,
                    {"Authorization": f"Bearer {admin}"},
                    {"Authorization": f"Bearer {platform}"},
                )
            )
        return nodes

    yield make
    # Background follows of a peer's key (app/services/rekey.py) call other nodes through
    # their TestClients: let them end before any client closes, or a follow into a closing
    # portal never returns and teardown hangs.
    for client in registry.values():
        client.app.state.federation.key_follower.join(timeout=10)  # type: ignore[attr-defined]
    stack.close()


def mesh(*nodes: TNode, policy: str = "") -> None:
    """Pin every node's key at every other node."""
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.add_peer(b, policy)
