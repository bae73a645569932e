"""spec/vectors/ regenerates byte-identically from the reference implementation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_vectors_are_current(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "spec" / "generate_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr


def test_vectors_regenerate_byte_identically(tmp_path: Path) -> None:
    for run in ("one", "two"):
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "spec" / "generate_vectors.py"),
                "--out",
                str(tmp_path / run),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    for f in (tmp_path / "one").iterdir():
        assert f.read_bytes() == (tmp_path / "two" / f.name).read_bytes(), f.name
