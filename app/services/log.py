"""The exchange log seen from the node: checkpoints now and on a cadence, reads for auditors."""

from __future__ import annotations

from app.crypto import merkle
from app.crypto.checkpoint import Checkpoint, sign_checkpoint
from app.services.node import Node
from app.storage import log as log_store
from app.storage.models import CheckpointRow


def publish_checkpoint(node: Node) -> CheckpointRow:
    """Sign a checkpoint of the log as it is now, unless the latest one already covers it.

    Runs in a write transaction so the size read and the checkpoint saved are the same tree.
    """
    with node.db.write() as session:
        size = log_store.log_size(session)
        latest = log_store.latest_checkpoint(session)
        if latest is not None and latest.size == size:
            return latest
        reader = log_store.NodeReader(session)
        if size:
            reader.prefetch(merkle.perfect_node_ids(0, size))
        root = merkle.root_hash(size, reader)
        note = sign_checkpoint(Checkpoint(node.origin, size, root), node.key)
        log_store.save_checkpoint(session, size, root, note)
        row = CheckpointRow(size=size, root_hash=root, note=note)
        return row


def latest_checkpoint(node: Node) -> CheckpointRow:
    """The newest checkpoint, publishing one first if the log has none yet."""
    with node.db.read() as session:
        row = log_store.latest_checkpoint(session)
    return row if row is not None else publish_checkpoint(node)
