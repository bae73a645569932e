"""Schemathesis fuzzes a real node process from its own OpenAPI contract: no request gets a 5xx."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .node_proc import BIN, running_node

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(shutil.which("schemathesis", path=str(BIN)) is None, reason="no schemathesis")
def test_no_request_gets_a_server_error(tmp_path: Path) -> None:
    with running_node(tmp_path, origin="fuzz.example") as node:
        key = node.create_key("submit,match,read,feedback,audit,feed")
        result = subprocess.run(
            [
                BIN / "schemathesis",
                "run",
                node.url + "/openapi.json",
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
    assert "Traceback" not in node.log.read_text()
