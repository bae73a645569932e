"""C2SP tlog-witness `add-checkpoint`, as a pure decision over the witness's stored state.

The caller (a service) loads the state for the checkpoint's origin, calls `add_checkpoint`
and stores the returned state **in the same transaction** as the check: otherwise two
concurrent requests can roll the witness back (see the spec's race). Errors map to the
spec's statuses: `UnknownLogError` 404, `VerificationError` 403, `MalformedError` 400,
`WitnessConflict` 409 (body: `known_size`), `EquivocationError` 409, `ProofError` 422.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.crypto._encoding import b64decode, b64encode
from app.crypto.checkpoint import Checkpoint, cosign, parse_checkpoint_body
from app.crypto.errors import EquivocationError, MalformedError, UnknownLogError, WitnessConflict
from app.crypto.keys import NodeKey, VerifierKey
from app.crypto.merkle import HASH_SIZE, RootHash, empty_root, verify_consistency
from app.crypto.note import open_note, parse_note
from app.errors import VerificationError

__all__ = [
    "MAX_PROOF_LINES",
    "AddCheckpointRequest",
    "AddCheckpointResult",
    "WitnessState",
    "add_checkpoint",
    "format_add_checkpoint_body",
    "parse_add_checkpoint_body",
]

MAX_PROOF_LINES = 63
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]*)")


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed add-checkpoint body: old size, consistency proof, checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint_note: str

    @property
    def origin(self) -> str:
        """The checkpoint's origin line, *unverified*: only to look up keys and state."""
        return parse_checkpoint_body(parse_note(self.checkpoint_note).text).origin


@dataclass(frozen=True)
class WitnessState:
    """What a witness keeps per log: the latest checkpoint it cosigned, and its note.

    The note is kept as evidence: with a later conflicting note it proves equivocation.
    """

    origin: str
    size: int
    root_hash: RootHash
    checkpoint_note: str


@dataclass(frozen=True)
class AddCheckpointResult:
    """The state to store and the cosignature line to return (newline included)."""

    state: WitnessState
    checkpoint: Checkpoint
    cosignature: str


def parse_add_checkpoint_body(text: str) -> AddCheckpointRequest:
    """Parse `old <size>\\n<base64 proof lines>\\n\\n<checkpoint note>`."""
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise MalformedError("add-checkpoint", "no blank line before the checkpoint")
    old_line, *proof_lines = head.split("\n")
    match = _OLD_LINE.fullmatch(old_line)
    if match is None:
        raise MalformedError("add-checkpoint", f"bad old size line {old_line[:40]!r}")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise MalformedError("add-checkpoint", f"more than {MAX_PROOF_LINES} proof lines")
    proof = tuple(b64decode(line, "consistency proof") for line in proof_lines)
    if any(len(h) != HASH_SIZE for h in proof):
        raise MalformedError("add-checkpoint", f"proof hashes must be {HASH_SIZE} bytes")
    if not note:
        raise MalformedError("add-checkpoint", "missing checkpoint")
    return AddCheckpointRequest(int(match.group(1)), proof, note)


def format_add_checkpoint_body(old_size: int, proof: Sequence[bytes], checkpoint_note: str) -> str:
    """The add-checkpoint request body (what a log sends to a witness)."""
    if old_size < 0:
        raise ValueError(f"old size must be >= 0, got {old_size}")
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError(f"more than {MAX_PROOF_LINES} proof hashes")
    lines = [f"old {old_size}", *(b64encode(h) for h in proof)]
    return "".join(line + "\n" for line in lines) + "\n" + checkpoint_note


def add_checkpoint(
    request: AddCheckpointRequest,
    state: WitnessState | None,
    log_keys: Sequence[VerifierKey],
    witness_key: NodeKey,
    witness_name: str,
    timestamp: int,
) -> AddCheckpointResult:
    """Decide an add-checkpoint request; return the new state and the cosignature line.

    `state` is what this witness stored for the origin (None if it never cosigned it);
    `log_keys` are the keys pinned for the origin (empty: unknown log).
    """
    if not log_keys:
        raise UnknownLogError(f"no pinned key for log {request.origin!r}")
    text, _ = open_note(request.checkpoint_note, log_keys)
    cp = parse_checkpoint_body(text)
    if cp.origin not in {k.origin for k in log_keys}:
        raise VerificationError(f"checkpoint origin {cp.origin!r} does not match its log key")
    if state is not None and state.origin != cp.origin:
        raise ValueError(f"state is for {state.origin!r}, checkpoint for {cp.origin!r}")
    if request.old_size > cp.size:
        raise MalformedError(
            "old", f"old size {request.old_size} is larger than the checkpoint size {cp.size}"
        )
    known_size = state.size if state is not None else 0
    if request.old_size != known_size:
        raise WitnessConflict(
            f"old size {request.old_size} does not match the cosigned size {known_size} "
            f"of {cp.origin!r}",
            known_size,
        )
    if state is not None and state.size == cp.size and state.root_hash != cp.root_hash:
        raise EquivocationError(
            f"log {cp.origin!r} signed two roots for size {cp.size}: "
            f"{state.root_hash.hex()} (cosigned) and {cp.root_hash.hex()}",
            known_size,
            cp.origin,
            (state.checkpoint_note, request.checkpoint_note),
        )
    old_root = state.root_hash if state is not None else empty_root()
    # tlog-witness accepts `old 0` with an empty proof: the witness has nothing to check.
    verify_consistency(
        request.old_size, cp.size, request.proof, old_root, cp.root_hash, allow_empty_old=True
    )
    line = cosign(cp, witness_key, witness_name, timestamp)
    new_state = WitnessState(cp.origin, cp.size, cp.root_hash, request.checkpoint_note)
    return AddCheckpointResult(new_state, cp, line)
