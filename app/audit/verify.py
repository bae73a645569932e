"""Offline verification of a whole exchange log: entries, records, root and checkpoint.

Network and files stay outside (see `client.py`, `export.py`): feed `LogAuditor` the entries
in index order, then call `finish(note)`. The node is not trusted for anything: leaf hashes
are recomputed from the entries' RFC 8785 bytes, the root from the leaves, and the checkpoint
signature is checked against the pinned key or a key the log's rotation records chain to it.

Signed records inside entries (`record`) are verified against their origin's key: this node's
keys (pinned + rotations), or `peer_keys` for records other origins signed. A record from an
origin nobody pinned is counted as unverified, not failed. Entries about red/amber records
hold only a salted commitment and are counted as such; one that also carries a field linking
it to its record or to another log (`LINKING_FIELDS`) is listed in `report.linkable`.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.audit.errors import AuditFailed
from app.audit.rotation import ROTATION_KIND, verify_rotation
from app.audit.tree import LeafHashes
from app.crypto import merkle
from app.crypto._encoding import b64encode
from app.crypto.canonical import canonical_json
from app.crypto.checkpoint import Checkpoint, parse_checkpoint_body
from app.crypto.errors import MalformedError
from app.crypto.keys import VerifierKey
from app.crypto.note import NoteSignature, open_note, parse_note
from app.crypto.records import verify_record
from app.errors import SignetError, VerificationError

__all__ = [
    "AuditReport",
    "LogAuditor",
    "checkpoint_signatures",
    "peek_checkpoint",
    "verify_checkpoint",
]

MAX_FAILURES = 20  # keep reporting after the first failure, up to this many
# Fields that must not sit beside a salted commitment: each would link the restricted entry to
# its record, or to another node's log, even once the salt is erased.
LINKING_FIELDS = frozenset({"digest", "digests", "record", "to", "from"})


def peek_checkpoint(note: str) -> Checkpoint:
    """Parse a checkpoint note *without* verifying it (to learn the size to download)."""
    try:
        return parse_checkpoint_body(parse_note(note).text)
    except MalformedError as exc:
        raise AuditFailed(f"checkpoint: malformed note: {exc}") from exc


def checkpoint_signatures(note: str) -> tuple[NoteSignature, ...]:
    """Every signature line of a checkpoint note, the log's and any witness cosignatures.

    Unverified: callers check the ones they have keys for (e.g. witness quorum checks with
    `app.crypto.checkpoint.verify_cosignature`).
    """
    return parse_note(note).signatures


def verify_checkpoint(note: str, keys: Iterable[VerifierKey]) -> Checkpoint:
    """Verify the log's signature on a checkpoint with any of the origin's known keys."""
    keys = list(keys)
    try:
        text, _ = open_note(note, keys)
        cp = parse_checkpoint_body(text)
    except (MalformedError, VerificationError) as exc:
        raise AuditFailed(f"checkpoint: {exc}") from exc
    origins = {k.origin for k in keys}
    if cp.origin not in origins:
        raise AuditFailed(f"checkpoint: origin {cp.origin!r} is not the pinned origin {origins}")
    return cp


@dataclass
class AuditReport:
    """What was checked; `failures` is empty when the log holds."""

    origin: str
    size: int = 0
    root: bytes = b""
    kinds: Counter[str] = field(default_factory=Counter)
    verified: Counter[str] = field(default_factory=Counter)  # records per origin
    unverified: Counter[str] = field(default_factory=Counter)  # records of unpinned origins
    commitments: int = 0
    # Commitment entries that also carry what links them (an unsalted digest, a record, a
    # recipient or sender): written by nodes before issue 9; reported, not failed, since
    # history cannot be rewritten.
    linkable: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # this origin's keys, pinned first
    failures: list[tuple[int | None, str]] = field(default_factory=list)

    def fail(self, index: int | None, message: str) -> None:
        if len(self.failures) < MAX_FAILURES:
            self.failures.append((index, message))

    def first_failure(self) -> AuditFailed | None:
        if not self.failures:
            return None
        ordered = sorted(self.failures, key=lambda f: (f[0] is None, f[0] or 0))
        index, message = ordered[0]
        return AuditFailed(message, index)


class LogAuditor:
    """Verify entries as they stream in; `finish()` checks the tree head."""

    def __init__(self, pinned: VerifierKey, peer_keys: Iterable[VerifierKey] = ()) -> None:
        self.origin = pinned.origin
        self.tree = LeafHashes()
        self.report = AuditReport(origin=self.origin, keys=[str(pinned)])
        self._own: dict[str, VerifierKey] = {pinned.key_id: pinned}
        self._peers: dict[str, dict[str, VerifierKey]] = {}
        for k in peer_keys:
            self._peers.setdefault(k.origin, {})[k.key_id] = k
        # Own-origin records under a key not (yet) known: rotation records later in the log
        # may chain it to the pinned key, so they are judged at the end.
        self._deferred: list[tuple[int, dict[str, Any]]] = []
        self._rotations: list[tuple[int, VerifierKey, VerifierKey]] = []

    @property
    def size(self) -> int:
        return self.tree.size

    def own_keys(self) -> list[VerifierKey]:
        return list(self._own.values())

    def add(self, index: int, entry: Any, leaf_hash: bytes | None = None) -> None:
        """Check one entry; `leaf_hash` is the node's stored hash for it, if it served one."""
        if index != self.tree.size:
            raise AuditFailed(f"entry {index}: expected entry {self.tree.size} next", index)
        if not isinstance(entry, Mapping):
            self.report.fail(index, f"entry {index}: not a JSON object")
            entry = {}
        try:
            data = canonical_json(entry)
        except MalformedError as exc:
            self.report.fail(index, f"entry {index}: cannot be canonicalised: {exc}")
            data = b""
        h = merkle.leaf_hash(data)
        if leaf_hash is not None and not hmac.compare_digest(h, leaf_hash):
            self.report.fail(
                index,
                f"entry {index}: its content does not hash to the leaf the node stored "
                f"(computed {h.hex()}, stored {leaf_hash.hex()}): the entry was altered",
            )
        self.tree.append(h)
        kind = entry.get("kind")
        self.report.kinds[str(kind)] += 1
        if "commitment" in entry:
            self.report.commitments += 1
            if LINKING_FIELDS & set(entry) and len(self.report.linkable) < MAX_FAILURES:
                self.report.linkable.append(index)
        record = entry.get("record")
        if isinstance(record, Mapping):
            self._check_record(index, dict(record))

    def _check_record(self, index: int, record: dict[str, Any]) -> None:
        origin = record.get("origin")
        if record.get("kind") == ROTATION_KIND and origin == self.origin:
            try:
                old, new = verify_rotation(record)
            except VerificationError as exc:
                self.report.fail(index, f"entry {index}: key rotation record: {exc}")
                return
            self._rotations.append((index, old, new))
            self._learn_keys()
        if origin == self.origin:
            key = self._own.get(str(record.get("key_id")))
            if key is None:
                self._deferred.append((index, record))
                return
            self._verify(index, record, key)
        elif isinstance(origin, str) and origin in self._peers:
            key = self._peers[origin].get(str(record.get("key_id")))
            if key is None:
                self.report.fail(
                    index,
                    f"entry {index}: record of {origin} names key {record.get('key_id')!r}, "
                    "not the pinned peer key",
                )
                return
            self._verify(index, record, key)
        else:
            self.report.unverified[str(origin)] += 1

    def _verify(self, index: int, record: dict[str, Any], key: VerifierKey) -> None:
        try:
            verify_record(record, lambda _origin: key)
        except SignetError as exc:
            what = record.get("kind", "record")
            self.report.fail(index, f"entry {index}: {what} record signature: {exc}")
            return
        self.report.verified[key.origin] += 1

    def _learn_keys(self) -> None:
        # Fixpoint: a rotation links two keys; once either is trusted, so is the other.
        changed = True
        while changed:
            changed = False
            for _, old, new in self._rotations:
                if (old.key_id in self._own) != (new.key_id in self._own):
                    for k in (old, new):
                        if k.key_id not in self._own:
                            self._own[k.key_id] = k
                            self.report.keys.append(str(k))
                    changed = True

    def finish(self, note: str) -> AuditReport:
        """Judge deferred records, verify the checkpoint and compare roots.

        Returns the report; raises nothing for entry failures (see `report.failures`) so the
        caller can locate a root mismatch first. Raises `AuditFailed` if the checkpoint itself
        does not verify.
        """
        for index, record in self._deferred:
            key = self._own.get(str(record.get("key_id")))
            if key is None:
                self.report.fail(
                    index,
                    f"entry {index}: record signed by key {record.get('key_id')!r} of "
                    f"{self.origin}, which is neither the pinned key nor chained to it by "
                    "a key rotation record",
                )
            else:
                self._verify(index, record, key)
        self._deferred.clear()
        cp = verify_checkpoint(note, self.own_keys())
        self.report.size = cp.size
        self.report.root = cp.root_hash
        if cp.size != self.tree.size:
            raise AuditFailed(
                f"checkpoint: size {cp.size} but {self.tree.size} entries were checked"
            )
        root = self.tree.root()
        if not hmac.compare_digest(root, cp.root_hash):
            self.report.fail(
                None,
                f"root: entries hash to {b64encode(root)}, the checkpoint says "
                f"{b64encode(cp.root_hash)} (size {cp.size})",
            )
        return self.report
