"""The exchange log seen from the node: checkpoints now and on a cadence, reads for auditors."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from app.audit.formats import EXPORT_CHECKPOINT, EXPORT_ENTRIES, EXPORT_VERIFIER_KEY
from app.crypto import merkle
from app.crypto._encoding import b64encode
from app.crypto.canonical import canonical_json
from app.crypto.checkpoint import Checkpoint, sign_checkpoint
from app.errors import InvalidInput, NotFound
from app.services.node import Node
from app.storage import log as log_store
from app.storage import logscan, repos
from app.storage.models import CheckpointRow, LogEntryRow, SignalRow

log = logging.getLogger("signet.log")


def publish_checkpoint(node: Node) -> CheckpointRow:
    """Sign a checkpoint of the log as it is now, unless the latest one already covers it.

    Runs in a write transaction so the size read and the checkpoint saved are the same tree.
    """
    with node.db.write() as session:
        size = log_store.log_size(session)
        latest = log_store.latest_checkpoint(session)
        if latest is not None and latest.size == size:
            return latest
        reader = logscan.NodeReader(session)
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


# --- reads for auditors ----------------------------------------------------------------------

MAX_ENTRIES_PAGE = 1000
# How far the publication entry of a retracted signal is looked for past the point its time
# puts it at (see `signal_entries`).
SIGNAL_SEARCH_WINDOW = 5000
CLOCK_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class LogEntry:
    """One entry as served: `entry` is the JSON whose RFC 8785 bytes are the leaf data."""

    index: int
    entry: dict[str, Any]
    leaf_hash: bytes


def checkpoint_note(node: Node, size: int | None = None) -> str:
    """The latest checkpoint note, or the one stored for `size`, with the cosignatures peers
    gave it (C2SP tlog-cosignature lines appended; verifiers ignore keys they do not know)."""
    from app.storage import peers as peer_store

    if size is None:
        row = latest_checkpoint(node)
    else:
        if size < 0:
            raise InvalidInput("size", "must be >= 0")
        with node.db.read() as session:
            found = log_store.checkpoint_at(session, size)
        if found is None:
            raise NotFound(f"no checkpoint was published at size {size}")
        row = found
    with node.db.read() as session:
        lines = [c.line for c in peer_store.cosignatures(session, row.size)]
    return row.note + "".join(lines)


def _size(session: Session) -> int:
    return log_store.log_size(session)


def entries_page(node: Node, start: int, end: int) -> list[LogEntry]:
    """Entries `[start, end)`, at most `MAX_ENTRIES_PAGE` of them and never past the log end.

    A shorter page than asked means "ask again from where it stopped", as in RFC 6962 get-entries.
    """
    if start < 0:
        raise InvalidInput("start", "must be >= 0")
    if end <= start:
        raise InvalidInput("end", f"must be greater than start ({start})")
    with node.db.read() as session:
        size = _size(session)
        if start >= size:
            raise InvalidInput("start", f"beyond the end of the log (size {size})")
        end = min(end, size, start + MAX_ENTRIES_PAGE)
        rows = log_store.entries(session, start, end)
        hashes = logscan.leaf_hashes(session, start, end)
    return [LogEntry(r.idx, json.loads(r.data), h) for r, h in zip(rows, hashes, strict=True)]


def inclusion_proof(node: Node, index: int, size: int) -> tuple[bytes, list[bytes]]:
    """Leaf hash of entry `index` and its inclusion proof in the tree of `size` leaves."""
    if size <= 0:
        raise InvalidInput("size", "must be >= 1")
    if not 0 <= index < size:
        raise InvalidInput("index", f"must be in 0..{size - 1} (size {size})")
    with node.db.read() as session:
        current = _size(session)
        if size > current:
            raise InvalidInput("size", f"beyond the log (size {current})")
        reader = logscan.NodeReader(session)
        # One query for every node the proof needs, then pure computation.
        reader.prefetch([(0, index), *merkle.inclusion_proof_node_ids(index, size)])
        return reader(0, index), merkle.inclusion_proof(index, size, reader)


def consistency_proof(node: Node, size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof from `size1` to `size2`."""
    if size1 <= 0:
        raise InvalidInput("from", "must be >= 1 (a proof from the empty tree proves nothing)")
    if size2 < size1:
        raise InvalidInput("to", f"must be >= from ({size1})")
    with node.db.read() as session:
        current = _size(session)
        if size2 > current:
            raise InvalidInput("to", f"beyond the log (size {current})")
        reader = logscan.NodeReader(session)
        reader.prefetch(merkle.consistency_proof_node_ids(size1, size2))
        return merkle.consistency_proof(size1, size2, reader)


# --- the entries about one signal -------------------------------------------------------------


@dataclass(frozen=True)
class SignalEntries:
    checkpoint: str
    size: int
    entries: list[tuple[LogEntry, list[bytes]]]  # entry and its inclusion proof at `size`


def _is_about(row: LogEntryRow, signal: SignalRow) -> bool:
    """Whether a log entry records this signal's publication or retraction.

    Entries carry the record, or for red/amber signals a salted commitment to it: checked
    against the record the signal row holds, with the salt only the node has.
    """
    entry = json.loads(row.data)
    record = entry.get("record")
    if isinstance(record, dict):
        # A signal record names itself; a retraction names the signal it withdraws.
        target = record if record.get("kind") == "signal" else record.get("signal")
        return (
            isinstance(target, dict)
            and target.get("id") == signal.uid
            and target.get("origin", record.get("origin")) == signal.origin
        )
    commitment = entry.get("commitment")
    if isinstance(commitment, str) and row.salt is not None:
        for candidate in (signal.record, signal.retraction):
            if candidate and hmac.compare_digest(
                hashlib.sha256(bytes(row.salt) + canonical_json(candidate)).hexdigest(),
                commitment,
            ):
                return True
    return False


def _find_publication(session: Session, signal: SignalRow, before: int) -> LogEntryRow | None:
    # No column maps a signal to its publication entry (that needs a migration), but the
    # publication was appended in the transaction that created the row, just after
    # `created_at` was taken. Binary-search the log by time, then scan a bounded window,
    # checking each candidate against the signal itself: a clock step can make this miss,
    # never return a wrong entry.
    start = logscan.first_index_at_or_after(
        session, signal.created_at - CLOCK_SLACK, 0, max(before - 1, 0)
    )
    stop = min(before, start + SIGNAL_SEARCH_WINDOW)
    for offset in range(start, stop, MAX_ENTRIES_PAGE):
        for row in log_store.entries(session, offset, min(stop, offset + MAX_ENTRIES_PAGE)):
            if row.kind == "signal" and _is_about(row, signal):
                return row
    return None


def signal_entries(node: Node, uid: str) -> SignalEntries:
    """This node's log entries about a signal (publication, retraction) with inclusion proofs
    against the latest checkpoint (published now if it does not cover them yet)."""
    with node.db.read() as session:
        signal = repos.get_signal(session, uid, node.origin) or repos.get_signal(session, uid)
        if signal is None:
            raise NotFound(f"no signal with id {uid!r}")
        found: list[LogEntryRow] = []
        latest = log_store.entries(session, signal.change_seq, signal.change_seq + 1)
        if latest and _is_about(latest[0], signal):
            found.append(latest[0])
        if not found or found[0].kind != "signal":
            publication = _find_publication(session, signal, signal.change_seq)
            if publication is not None:
                found.insert(0, publication)
    if not found:
        raise NotFound(f"no log entry found for signal {uid!r}")
    cp = latest_checkpoint(node)
    if cp.size <= found[-1].idx:
        cp = publish_checkpoint(node)
    with node.db.read() as session:
        hashes = {r.idx: logscan.leaf_hashes(session, r.idx, r.idx + 1)[0] for r in found}
    out = []
    for r in found:
        _, proof = inclusion_proof(node, r.idx, cp.size)
        out.append((LogEntry(r.idx, json.loads(r.data), hashes[r.idx]), proof))
    return SignalEntries(cp.note, cp.size, out)


# --- configuration entries ---------------------------------------------------------------------


def public_config(node: Node) -> dict[str, Any]:
    """The node's public configuration: what peers and auditors may rely on. No secrets."""
    from app.signals.vocab import Category

    s = node.settings
    return {
        "origin": node.origin,
        "public_url": s.public_url,
        "verifier_key": node.verifier_key,
        "categories": sorted({c.value for c in Category} | set(s.extra_categories)),
        "validity_days": dict(sorted(s.validity_days.items())),
        "max_batch": s.max_batch,
        "retention_days": s.retention_days,
    }


def log_config_if_changed(node: Node) -> int | None:
    """Append a `config` entry if the public configuration differs from the last one logged.

    Run at start; several workers starting at once append it once (the check and the append
    share the sequencer lock). Returns the new entry's index, or None if nothing changed.

    The first entry records the node's key. A host whose key is not the logged one (nor a key
    it rotated from) is warned here, under the sequencer lock, as well as by `open_node` before
    it makes a key: hosts started together with no key file each found no key logged there and
    made their own, and the one that logged second used to do so in silence.
    """
    from app.services.node import warn_if_another_key_is_logged
    from app.services.tx import transaction

    config = public_config(node)
    with transaction(node) as tx:
        logged = logscan.logged_config(tx.session)
        if logged == config:
            return None
        index = tx.append("config", {"config": config})
    log.info("logged configuration change at entry %d", index)
    warn_if_another_key_is_logged(node, logged, index)
    return index


# --- export --------------------------------------------------------------------------------------


def export(node: Node, directory: Path, progress: Callable[[int], object] | None = None) -> int:
    """Write a fresh checkpoint and every entry it covers to `directory`; returns the size.

    Files: `checkpoint` (the signed note), `entries.jsonl` (`{"index", "entry", "leaf_hash"}`
    per line, in order) and `verifier_key` (a convenience: auditors pin their own copy).
    """
    directory.mkdir(parents=True, exist_ok=True)
    cp = publish_checkpoint(node)
    tmp = directory / (EXPORT_ENTRIES + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        start = 0
        while start < cp.size:
            page = entries_page(node, start, min(cp.size, start + MAX_ENTRIES_PAGE))
            for e in page:
                line = {"index": e.index, "entry": e.entry, "leaf_hash": b64encode(e.leaf_hash)}
                out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            start += len(page)
            if progress is not None:
                progress(len(page))
    tmp.replace(directory / EXPORT_ENTRIES)
    (directory / EXPORT_CHECKPOINT).write_text(cp.note, encoding="utf-8")
    (directory / EXPORT_VERIFIER_KEY).write_text(node.verifier_key + "\n", encoding="utf-8")
    return cp.size
