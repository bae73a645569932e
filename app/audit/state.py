"""The auditor's memory: the last checkpoint it verified, saved atomically."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from app.audit.errors import AuditFailed
from app.crypto._encoding import b64decode, b64encode
from app.crypto.errors import MalformedError


@dataclass(frozen=True)
class AuditState:
    origin: str
    size: int
    root: bytes
    checkpoint: str


def load_state(path: Path) -> AuditState | None:
    """The saved state, or None if the file does not exist yet."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return AuditState(
            str(raw["origin"]), int(raw["size"]), b64decode(raw["root"], "root"), raw["checkpoint"]
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, MalformedError) as exc:
        raise AuditFailed(f"state file {path}: unreadable ({exc})") from exc


def save_state(path: Path, state: AuditState) -> None:
    """Write the state so a crash leaves the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    data = {
        "origin": state.origin,
        "size": state.size,
        "root": b64encode(state.root),
        "checkpoint": state.checkpoint,
    }
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
