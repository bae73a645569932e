"""Schemathesis fuzzes a real node process from its own OpenAPI contract: no request gets a 5xx."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("schemathesis", path=str(BIN)) is None, reason="no schemathesis")
def test_no_request_gets_a_server_error(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SIGNET_DATA_DIR": str(tmp_path),
        "SIGNET_PORT": str(port),
        "SIGNET_ORIGIN": "fuzz.example",
        "SIGNET_BACKGROUND": "false",
    }
    env.pop("SIGNET_DATABASE_URL", None)
    key = subprocess.run(
        [
            BIN / "signet",
            "api-keys",
            "create",
            "--name",
            "fuzz",
            "--scopes",
            "submit,match,read,feedback,audit,feed",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    server = subprocess.Popen([BIN / "signet", "serve"], env=env, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        result = subprocess.run(
            [
                BIN / "schemathesis",
                "run",
                base + "/openapi.json",
                "-H",
                f"Authorization: Bearer {key}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--seed",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-4000:]
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
