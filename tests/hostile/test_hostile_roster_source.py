"""A roster mirror that drips its answer a byte at a time, or sends too much, is cut off: the
roster source is read with the same total deadline and size cap as a peer's answers (before,
only a per-read timeout applied, which a drip never trips)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.federation.roster import RosterError
from app.services import roster


@pytest.fixture
def mirror() -> Iterator[tuple[str, dict[str, Any]]]:
    mode: dict[str, Any] = {"drip": True}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            if mode["drip"]:
                self.end_headers()
                try:
                    for _ in range(200):  # 20 s at most, far past the deadline under test
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    pass  # the reader hung up, as it should
            else:
                body = b"[" + b"0," * (roster.MAX_FETCH_BYTES // 2) + b"0]"
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                # Refused from its content-length: the reader hangs up mid-write.
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/roster.json", mode
    finally:
        server.shutdown()
        server.server_close()


def test_a_dripping_mirror_is_cut_off_at_the_deadline(mirror: tuple[str, dict[str, Any]]) -> None:
    url, _ = mirror
    with pytest.raises(RosterError, match="no complete answer within 1 s"):
        roster.read_source(url, deadline=1.0)


def test_an_oversized_roster_is_refused_before_it_is_read(
    mirror: tuple[str, dict[str, Any]],
) -> None:
    url, mode = mirror
    mode["drip"] = False
    with pytest.raises(RosterError, match="cap"):
        roster.read_source(url)
