"""An audit from end to end: online against a node, or offline on an export directory.

Both raise `AuditFailed` naming the first failing entry or proof, and return the report
when everything holds. With a state file, the new checkpoint must extend the saved one
(checked by a consistency proof, and against the entries themselves), then replaces it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from app.audit.client import PAGE, AuditClient
from app.audit.errors import AuditFailed
from app.audit.formats import EXPORT_CHECKPOINT, EXPORT_ENTRIES
from app.audit.state import AuditState, load_state, save_state
from app.audit.tree import LeafHashes
from app.audit.verify import AuditReport, LogAuditor, peek_checkpoint
from app.crypto import merkle
from app.crypto._encoding import b64decode
from app.crypto.errors import MalformedError
from app.crypto.keys import VerifierKey
from app.errors import ProofError

__all__ = ["audit_export", "audit_node", "locate_divergence"]

Progress = Callable[[int, int], object]  # (entries done, total)
Consistency = Callable[[int, int], list[bytes]]


def locate_divergence(
    tree: LeafHashes, size: int, root: bytes, consistency: Consistency
) -> int | None:
    """The first entry the checkpoint `(size, root)` does not commit to, by bisection.

    A prefix of m entries is the checkpoint's if a consistency proof from m to `size`
    reproduces both our root of the prefix and the checkpoint root; that holds up to the
    first altered entry and fails from there, so O(log n) proofs find it.
    """

    def good(m: int) -> bool:
        local = tree.root_at(m)
        if m == size:
            return hmac.compare_digest(local, root)
        try:
            merkle.verify_consistency(m, size, consistency(m, size), local, root)
        except (ProofError, AuditFailed):
            return False
        return True

    if size == 0 or good(size):
        return None
    lo, hi = 1, size
    while lo < hi:
        mid = (lo + hi) // 2
        if good(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def _conclude(
    auditor: LogAuditor,
    note: str,
    state_path: Path | None,
    consistency: Consistency | None,
) -> AuditReport:
    report = auditor.finish(note)
    failure = report.first_failure()
    if failure is not None:
        if failure.index is None and consistency is not None:
            bad = locate_divergence(auditor.tree, report.size, report.root, consistency)
            if bad is not None:
                raise AuditFailed(
                    f"entry {bad}: not the entry the checkpoint commits to ({failure})", bad
                )
        raise failure
    if state_path is not None:
        _check_state(auditor, report, note, state_path, consistency)
    return report


def _check_state(
    auditor: LogAuditor,
    report: AuditReport,
    note: str,
    path: Path,
    consistency: Consistency | None,
) -> None:
    old = load_state(path)
    if old is not None:
        if old.origin != report.origin:
            raise AuditFailed(f"state file {path} is for {old.origin}, not {report.origin}")
        if report.size < old.size:
            raise AuditFailed(f"consistency: the log shrank from size {old.size} to {report.size}")
        if consistency is not None and old.size > 0:
            proof = consistency(old.size, report.size) if old.size < report.size else []
            try:
                merkle.verify_consistency(old.size, report.size, proof, old.root, report.root)
            except ProofError as exc:
                raise AuditFailed(
                    f"consistency proof from size {old.size} to {report.size}: {exc}"
                ) from exc
        # Stronger than the proof, as we hold every entry: the old tree is our prefix. (Which
        # old entry changed cannot be told: the state keeps the old root, not the old entries.)
        if not hmac.compare_digest(auditor.tree.root_at(old.size), old.root):
            raise AuditFailed(
                f"consistency: the first {old.size} entries no longer hash to the root "
                f"verified before (size {old.size}): the log was rewritten"
            )
    save_state(path, AuditState(report.origin, report.size, report.root, note))


def audit_node(
    url: str,
    token: str,
    pinned: VerifierKey,
    *,
    peer_keys: Iterable[VerifierKey] = (),
    state_path: Path | None = None,
    progress: Progress | None = None,
    http: httpx.Client | None = None,
    sink: Callable[[int, Any], object] | None = None,
) -> AuditReport:
    """Download the latest checkpoint and every entry it covers, and verify all of it.

    `sink(index, entry)` sees each entry as it is checked (the transparency report keeps
    them); use them only once this returns, i.e. once the whole log verified."""
    with AuditClient(url, token, http=http) as client:
        note = client.checkpoint()
        size = peek_checkpoint(note).size
        auditor = LogAuditor(pinned, peer_keys)
        while auditor.size < size:
            start = auditor.size
            for index, entry, leaf in client.entries(start, min(size, start + PAGE)):
                if index >= size:
                    break
                auditor.add(index, entry, leaf)
                if sink is not None:
                    sink(index, entry)
            if auditor.size == start:
                raise AuditFailed(f"entries from {start}: the node returned nothing new", start)
            if progress is not None:
                progress(auditor.size, size)
        return _conclude(auditor, note, state_path, client.consistency)


def _export_lines(path: Path) -> Iterator[tuple[int, Any, bytes | None]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            try:
                item = json.loads(line)
                leaf = item.get("leaf_hash")
                yield (
                    int(item["index"]),
                    item["entry"],
                    b64decode(leaf, "leaf_hash") if leaf else None,
                )
            except (ValueError, KeyError, TypeError, AttributeError, MalformedError) as exc:
                raise AuditFailed(f"{path.name} line {n + 1}: malformed ({exc})", n) from exc


def audit_export(
    directory: Path,
    pinned: VerifierKey,
    *,
    peer_keys: Iterable[VerifierKey] = (),
    state_path: Path | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Verify an export written by `signet log export` (no network)."""
    try:
        note = (directory / EXPORT_CHECKPOINT).read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditFailed(f"export {directory}: no checkpoint ({exc.strerror})") from exc
    size = peek_checkpoint(note).size
    auditor = LogAuditor(pinned, peer_keys)
    entries_path = directory / EXPORT_ENTRIES
    if not entries_path.exists():
        raise AuditFailed(f"export {directory}: no {EXPORT_ENTRIES}")
    for index, entry, leaf in _export_lines(entries_path):
        if index >= size:
            break
        auditor.add(index, entry, leaf)
        if progress is not None and (auditor.size % PAGE == 0 or auditor.size == size):
            progress(auditor.size, size)
    return _conclude(auditor, note, state_path, None)
