"""A live node on a free loopback port, served by uvicorn in a thread of the test process.

The clients under test (python-threatexchange, taxii2-client, the `threatexchange` CLI in a
subprocess) speak real HTTP to it; the node itself is the test's `node` fixture, so the test can
also seed it through the service layer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from app.main import create_app
from app.services.node import Node
from app.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveNode:
    url: str
    node: Node

    def key(self, *scopes: str, member: bool = False) -> str:
        from app.services import apikeys

        return apikeys.create(self.node, "feeds-test", list(scopes), member).key


@pytest.fixture
def live(settings: Settings, node: Node) -> Iterator[LiveNode]:
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, node=node), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):  # bounded wait for the socket to accept
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError("live node did not start")
        yield LiveNode(url, node)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
