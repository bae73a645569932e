"""Helpers to read `tests/vectors/` (never the shared folder)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(relpath: str) -> Any:
    return json.loads((VECTORS / relpath).read_text(encoding="utf-8"))


def b64(s: str) -> bytes:
    # The merkle vectors use plain (possibly short) base64 for their corrupted values.
    return base64.b64decode(s)


def merkle_cases(kind: str) -> list[tuple[str, dict[str, Any]]]:
    root = VECTORS / "merkle" / kind
    return [
        (str(p.relative_to(root)), json.loads(p.read_text())) for p in sorted(root.rglob("*.json"))
    ]
