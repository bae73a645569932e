"""Node key rotation: a new Ed25519 key, handed over by a rotation record in the log.

`rotate()` generates the new key, logs a `key.rotated` entry holding the rotation record
(signed by the old key and by the new one, see `app.audit.rotation`), then swaps the key file.
The old *public* key is kept (`node.key.retired`, one verifier key per line, and in the log
itself), so records signed under it still verify: verifiers resolve a record's key by its
`key_id`. The old private key is not kept.

Order matters for crashes: the entry is committed before the key file is replaced. A crash in
between leaves the node signing with the old key, which is still valid (rotation is not
revocation), and the operator can rotate again.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from app.audit.rotation import sign_rotation
from app.crypto.keys import NodeKey, VerifierKey
from app.services.node import Node, key_path
from app.services.timefmt import rfc3339
from app.services.tx import transaction
from app.settings import Settings
from app.storage.types import utcnow

RETIRED_FILE = "node.key.retired"


@dataclass(frozen=True)
class Rotation:
    old_key: str
    new_key: str
    index: int


def retired_path(settings: Settings) -> Path:
    return settings.data_dir / RETIRED_FILE


def retired_keys(settings: Settings) -> list[VerifierKey]:
    """Public keys this node signed with before, oldest first."""
    try:
        lines = retired_path(settings).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [VerifierKey.parse(line) for line in lines if line.strip()]


def verifier_keys(node: Node) -> list[VerifierKey]:
    """Every key that may have signed this node's records: the current one first."""
    current = node.key.verifier(node.origin)
    return [current, *(k for k in retired_keys(node.settings) if k.key_id != current.key_id)]


def _write_key_file(path: Path, key: NodeKey) -> Path:
    """Write `key` to a fresh 0600 file beside `path`; returns the temp path."""
    from app.crypto.keys import _pem_from_seed

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_pem_from_seed(key._seed()))
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def rotate(node: Node) -> Rotation:
    """Rotate the node key; from now on this `node` (and any process started later) signs
    with the new one. Processes already running keep the old key until restarted."""
    old, new = node.key, NodeKey.generate()
    path = key_path(node.settings)
    tmp = _write_key_file(path, new)
    try:
        record = sign_rotation(old, new, node.origin, rfc3339(utcnow()))
        with transaction(node) as tx:
            index = tx.append("key.rotated", {"record": record})
        with retired_path(node.settings).open("a", encoding="utf-8") as fh:
            fh.write(old.verifier_key(node.origin) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic: readers see the old key file or the new, never half
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
    node.key = new
    return Rotation(str(record["old_key"]), str(record["new_key"]), index)
