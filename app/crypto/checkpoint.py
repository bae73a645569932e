"""C2SP tlog-checkpoint (signed tree heads) and tlog-cosignature v1 (witness cosignatures).

A checkpoint body is the origin line, the tree size in decimal, the base64 root hash and
optional extension lines, each ending in a newline. The log signs it as a signed note under
its origin. A witness cosigns with a type-0x04 key over
`cosignature/v1\\ntime <t>\\n` + the whole body; its signature is
`8-byte big-endian timestamp || 64-byte Ed25519 signature`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from app.crypto._encoding import b64decode, b64encode
from app.crypto.errors import MalformedError
from app.crypto.keys import (
    ALG_COSIGNATURE_V1,
    NodeKey,
    VerifierKey,
    validate_key_name,
    verifier_key_string,
)
from app.crypto.merkle import HASH_SIZE, RootHash
from app.crypto.note import (
    NoteSignature,
    format_signature_line,
    open_note,
    parse_note,
    sign_note,
)
from app.errors import VerificationError

__all__ = [
    "Checkpoint",
    "Cosignature",
    "cosign",
    "cosignature_message",
    "cosignature_verifier_key",
    "open_checkpoint",
    "open_cosigned_checkpoint",
    "parse_checkpoint_body",
    "parse_cosignature",
    "parse_cosignature_verifier_key",
    "sign_checkpoint",
    "verify_cosignature",
]

MAX_SIZE = 2**64 - 1
MAX_TIMESTAMP = 2**63 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: `origin`, `size` leaves, `root_hash`, and opaque extension lines."""

    origin: str
    size: int
    root_hash: RootHash
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_key_name(self.origin)  # the origin is also the log's note key name
        if not 0 <= self.size <= MAX_SIZE:
            raise MalformedError("checkpoint", f"size {self.size} outside 0..2**64-1")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedError("checkpoint", f"root hash must be {HASH_SIZE} bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise MalformedError("checkpoint", "extension lines must be non-empty lines")

    def body(self) -> str:
        """The checkpoint note text, ending in a newline."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse a checkpoint body (the note text, without signatures)."""
    if not text.endswith("\n"):
        raise MalformedError("checkpoint", "body must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedError("checkpoint", f"expected at least 3 lines, got {len(lines)}")
    origin, size_s, root_b64, *extensions = lines
    if not origin:
        raise MalformedError("checkpoint", "empty origin line")
    if _DECIMAL.fullmatch(size_s) is None:
        raise MalformedError("checkpoint", f"size {size_s[:30]!r} is not a decimal number")
    root = b64decode(root_b64, "checkpoint root hash")
    return Checkpoint(origin, int(size_s), RootHash(root), tuple(extensions))


def sign_checkpoint(cp: Checkpoint, key: NodeKey) -> str:
    """The checkpoint as a signed note, signed by the log key under its origin."""
    return sign_note(cp.body(), key, cp.origin)


def open_checkpoint(note: str, verifier: VerifierKey) -> Checkpoint:
    """Verify a checkpoint note with the log's pinned key and parse it.

    Other signature lines (cosignatures, other keys) are ignored here.
    """
    text, _ = open_note(note, [verifier])
    cp = parse_checkpoint_body(text)
    if cp.origin != verifier.origin:
        # The log signs under its origin; a key pinned for A must not vouch for log B.
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the origin of its key {verifier.origin!r}"
        )
    return cp


# --- tlog-cosignature v1 -------------------------------------------------------------------


@dataclass(frozen=True)
class Cosignature:
    """A parsed (unverified) cosignature/v1 line."""

    name: str
    key_hash: bytes
    timestamp: int
    signature: bytes

    def line(self) -> str:
        """The note signature line, newline included."""
        return format_signature_line(
            self.name, self.key_hash, struct.pack(">Q", self.timestamp) + self.signature
        )


def cosignature_verifier_key(name: str, public_key: bytes) -> str:
    """A witness's vkey: `<name>+<hash>+<base64(0x04 || public key)>`."""
    return verifier_key_string(name, public_key, alg=ALG_COSIGNATURE_V1)


def parse_cosignature_verifier_key(text: str) -> VerifierKey:
    """Parse a witness vkey of signature type 0x04 (any signed-note key name)."""
    return VerifierKey.parse(text, alg=ALG_COSIGNATURE_V1, any_name=True)


def cosignature_message(cp: Checkpoint, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header, time line, then the whole body."""
    _check_timestamp(timestamp)
    return f"cosignature/v1\ntime {timestamp}\n{cp.body()}".encode()


def cosign(cp: Checkpoint, key: NodeKey, witness_name: str, timestamp: int) -> str:
    """Cosign `cp` at POSIX time `timestamp`; returns the signature line (with newline).

    Appending the line to the checkpoint note gives the cosigned checkpoint.
    """
    vkey = key.verifier(validate_key_name(witness_name), alg=ALG_COSIGNATURE_V1)
    sig = key.sign(cosignature_message(cp, timestamp))
    return Cosignature(witness_name, vkey.key_hash, timestamp, sig).line()


def parse_cosignature(line: str) -> Cosignature:
    """Parse one cosignature/v1 line (with or without its newline)."""
    text = line.removesuffix("\n")
    if "\n" in text:
        raise MalformedError("cosignature", "expected exactly one line")
    # Reuse the note parser for the line grammar (one-line note with a placeholder text).
    (sig,) = parse_note(f"x\n\n{text}\n").signatures
    return _cosignature_from(sig)


def _cosignature_from(sig: NoteSignature) -> Cosignature:
    if len(sig.signature) != 8 + 64:
        raise MalformedError(
            "cosignature", f"{sig.name}: expected 8 + 64 bytes, got {len(sig.signature)}"
        )
    (timestamp,) = struct.unpack(">Q", sig.signature[:8])
    _check_timestamp(timestamp)
    return Cosignature(sig.name, sig.key_hash, timestamp, sig.signature[8:])


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedError("cosignature", f"timestamp {timestamp} outside 0..2**63-1")


def verify_cosignature(cp: Checkpoint, cosignature: Cosignature | str, key: VerifierKey) -> None:
    """Verify a witness cosignature on `cp` with the witness's pinned 0x04 key."""
    cosig = parse_cosignature(cosignature) if isinstance(cosignature, str) else cosignature
    if key.alg != ALG_COSIGNATURE_V1:
        raise VerificationError(f"key {key.origin} is type 0x{key.alg:02x}, not a cosigner key")
    if (cosig.name, cosig.key_hash) != (key.origin, key.key_hash):
        raise VerificationError(
            f"cosignature is by {cosig.name} ({cosig.key_hash.hex()}), "
            f"expected {key.origin} ({key.key_id})"
        )
    try:
        key.verify(cosignature_message(cp, cosig.timestamp), cosig.signature)
    except VerificationError as exc:
        raise VerificationError(
            f"cosignature by {cosig.name} at time {cosig.timestamp} does not verify "
            f"for {cp.origin} size {cp.size}"
        ) from exc


def open_cosigned_checkpoint(
    note: str, log_key: VerifierKey, witness_keys: Iterable[VerifierKey]
) -> tuple[Checkpoint, list[Cosignature]]:
    """Verify a checkpoint and return it with the valid cosignatures of known witnesses.

    Lines from unknown keys are ignored; a known witness's line that fails is an error, as
    for any note signature. Counting the returned witnesses against a quorum is the
    caller's policy.
    """
    cp = open_checkpoint(note, log_key)
    known = {(k.origin, k.key_hash): k for k in witness_keys if k.alg == ALG_COSIGNATURE_V1}
    valid: list[Cosignature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in parse_note(note).signatures:
        ident = (sig.name, sig.key_hash)
        key = known.get(ident)
        if key is None or ident in seen:
            continue
        seen.add(ident)
        cosig = _cosignature_from(sig)
        verify_cosignature(cp, cosig, key)
        valid.append(cosig)
    return cp, valid
