"""Observation 5: adding a peer must not read internal pages back to the admin.

`POST /v1/admin/peers` fetches `<url>/.well-known/signet`. Whatever that URL serves, and
whatever goes wrong, the admin gets a problem naming the step that failed, never the fetched
bytes or the upstream error; the node's log keeps the detail. A real HTTP server on loopback
plays the internal service. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.crypto.keys import NodeKey

SECRET = "INTERNAL-SECRET-7f3a"
PEER_KEY = NodeKey.generate().verifier_key("peer.example")


@pytest.fixture
def upstream() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    """A loopback server answering each path with the (status, body) the test sets."""
    routes: dict[str, tuple[int, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = routes.get(self.path, (404, f"no route {SECRET}".encode()))
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("served", "field", "step"),
    [
        ((404, f"<h1>admin console {SECRET}</h1>".encode()), "url", "fetch descriptor"),
        ((500, f"Traceback ... {SECRET}".encode()), "url", "fetch descriptor"),
        ((200, f"metadata: {SECRET}".encode()), "url", "fetch descriptor"),
        ((200, json.dumps({"kind": "node", "origin": SECRET}).encode()), "verifier_key",
         "verify descriptor"),
        ((200, json.dumps({"kind": "node", "origin": "peer.example", "verifier_key": PEER_KEY,
                           "signature": SECRET}).encode()), "verifier_key", "verify descriptor"),
    ],
)  # fmt: skip
def test_fetched_content_is_never_echoed(
    client: Any,
    make_key: Callable[..., dict[str, str]],
    upstream: tuple[str, dict[str, tuple[int, bytes]]],
    caplog: pytest.LogCaptureFixture,
    served: tuple[int, bytes],
    field: str,
    step: str,
) -> None:
    base, routes = upstream
    routes["/.well-known/signet"] = served
    with caplog.at_level(logging.WARNING, logger="signet.peers"):
        r = client.post(
            "/v1/admin/peers",
            headers=make_key("admin"),
            json={"url": base, "verifier_key": PEER_KEY},
        )
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"] == "application/problem+json"
    assert SECRET not in r.text
    assert r.json()["errors"][0]["field"] == field
    assert f"step '{step}' failed" in r.json()["detail"]
    assert "add peer peer.example" in caplog.text  # the operator's log has the detail


def test_transport_errors_are_not_echoed(
    client: Any, make_key: Callable[..., dict[str, str]]
) -> None:
    r = client.post(
        "/v1/admin/peers",
        headers=make_key("admin"),
        json={"url": f"http://127.0.0.1:{closed_port()}", "verifier_key": PEER_KEY},
    )
    assert 400 <= r.status_code < 500
    body = r.text.lower()
    assert "errno" not in body and "refused" not in body.replace("step", "")
    assert "step 'fetch descriptor' failed" in r.json()["detail"]
