"""`signet serve` start-up failures: one line naming the setting and the fix, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import load_settings

SIGNET = str(Path(sys.executable).parent / "signet")


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    return subprocess.run(
        [SIGNET, "serve", *args],
        env={**base, "SIGNET_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, r.stderr  # warnings may come first; one error line, then exit
    assert lines[0].startswith("error: ")
    assert r.stderr.rstrip().endswith(lines[0])
    return lines[0]


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    line = one_error_line(
        serve(tmp_path, SIGNET_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{port}/signet")
    )
    assert "SIGNET_DATABASE_URL=" in line and "reachable" in line


def test_unknown_scheme_names_the_setting(tmp_path: Path) -> None:
    r = serve(tmp_path, SIGNET_DATABASE_URL="mysql://x@localhost/db")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "SIGNET_DATABASE_URL must be a sqlite:///path or postgresql://" in r.stderr


def test_port_in_use_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = one_error_line(serve(tmp_path, "--port", str(port)))
    assert "already in use" in line and "SIGNET_PORT" in line


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_scheme_alias(scheme: str) -> None:
    s = load_settings(database_url=f"{scheme}://u@db.example:5432/signet")
    assert s.database_url == "postgresql+psycopg://u@db.example:5432/signet"
