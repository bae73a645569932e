"""Helpers for the hostile-client tests: a real HTTP server in a thread, PDQ codes, counters."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from sqlalchemy import event

from app.storage.db import Database

PDQ = "f" * 60 + "0000"


def pdq_flip(base: str, bits: list[int]) -> str:
    n = int(base, 16)
    for b in bits:
        n ^= 1 << b
    return f"{n:064x}"


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("server thread died")
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class QueryCounter:
    """Counts SQL statements sent to a database while active (`executed`: each with its
    parameters, to EXPLAIN it)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements: list[str] = []
        self.executed: list[tuple[str, Any]] = []

    def _on(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statements.append(statement)
        self.executed.append((statement, parameters))

    def __enter__(self) -> QueryCounter:
        event.listen(self.db.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.db.engine, "before_cursor_execute", self._on)
