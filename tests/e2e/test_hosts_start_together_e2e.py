"""Two `signet serve` hosts started at the same moment on one new database, each with an empty
data dir (docs/scaling.md, Running N hosts, before the key file was copied): both start, and
they end as if one had started after the other. The host that logged its key first has the
node's key; the other is warned, never a second silent "first" key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .node_proc import free_port, serve_processes

pytestmark = pytest.mark.e2e

WARNING = "this host logged its own key in its place"


def test_keyless_hosts_started_together(tmp_path: Path, empty_db_url: str) -> None:
    hosts = []
    for i in (1, 2):
        env = {
            **os.environ,
            "SIGNET_DATA_DIR": str(tmp_path / f"host{i}"),
            "SIGNET_DATABASE_URL": empty_db_url,
            "SIGNET_HOST": "127.0.0.1",
            "SIGNET_PORT": str(free_port()),
            "SIGNET_ORIGIN": "together.example",
            "SIGNET_PUBLIC_URL": "https://together.example",
            "SIGNET_BACKGROUND": "false",
            "SIGNET_LOG_LEVEL": "warning",
        }
        for name in ("SIGNET_URL", "SIGNET_API_KEY"):
            env.pop(name, None)
        hosts.append((env, tmp_path / f"host{i}.log"))
    with serve_processes(hosts):  # both must start: the migration of a new database is shared
        pass
    logs = [log.read_text() for _, log in hosts]

    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT data FROM log_entry WHERE kind = 'config' ORDER BY idx")
            ).all()
    finally:
        engine.dispose()
    keys = [json.loads(r[0])["config"]["verifier_key"] for r in rows]
    assert len(keys) == 2 and keys[0] != keys[1], keys  # each host made a key and logged it

    # The host whose key was logged second was warned, naming the first's key; the first not.
    second = next(i for i, log in enumerate(logs) if keys[1] in log)
    assert WARNING in logs[second] and keys[0] in logs[second], logs[second]
    assert WARNING not in logs[1 - second], logs[1 - second]
