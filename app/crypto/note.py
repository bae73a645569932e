"""C2SP signed-note: text, a blank line, then `— <name> base64(key hash || signature)` lines.

Opening a note follows the reference (golang.org/x/mod/sumdb/note): signatures by unknown
keys are ignored, a signature by a known key that fails is an error (never skipped, or a
forger could hide behind a valid co-signer), and at least one known key must have signed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.crypto._encoding import b64decode, b64encode
from app.crypto.errors import MalformedError
from app.crypto.keys import ALG_ED25519, NodeKey, VerifierKey, key_hash, validate_key_name
from app.errors import VerificationError

__all__ = [
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "format_signature_line",
    "open_note",
    "parse_note",
    "sign_note",
]

SIG_PREFIX = "\u2014 "  # EM DASH, then a space
MAX_SIGNATURES = 100  # as the reference: bounds the work an attacker's note can cause


@dataclass(frozen=True)
class NoteSignature:
    """One parsed signature line: key name, 4-byte key hash, signature bytes (unverified)."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, newline included."""
        return format_signature_line(self.name, self.key_hash, self.signature)


@dataclass(frozen=True)
class Note:
    """A parsed, *unverified* note: its text and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]


def format_signature_line(name: str, key_hash_: bytes, signature: bytes) -> str:
    """`— <name> base64(key hash || signature)\\n`."""
    validate_key_name(name)
    if len(key_hash_) != 4:
        raise MalformedError("key hash", f"must be 4 bytes, got {len(key_hash_)}")
    return f"{SIG_PREFIX}{name} {b64encode(key_hash_ + signature)}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedError("note", "text must be non-empty and end with a newline")
    # Control characters could make two parsers split the same bytes differently.
    for c in text:
        if (ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF:
            raise MalformedError("note", f"text contains control character U+{ord(c):04X}")


def sign_note(text: str, key: NodeKey, name: str) -> str:
    """Sign `text` (which must end in a newline) as key name `name` with an Ed25519 key."""
    _check_text(text)
    validate_key_name(name)
    sig = key.sign(text.encode("utf-8"))
    return (
        f"{text}\n{format_signature_line(name, key_hash(name, ALG_ED25519, key.public_key), sig)}"
    )


def parse_note(note: str) -> Note:
    """Split a note into text and signature lines, checking syntax only (nothing verified)."""
    _check_text(note)
    # The signature block is what follows the last blank line.
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedError("note", "no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise MalformedError("note", "no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError("note", f"more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIG_PREFIX):
        raise MalformedError("note", f"signature line does not start with '— ': {line[:80]!r}")
    name, sep, b64 = line[len(SIG_PREFIX) :].partition(" ")
    if not sep or not b64:
        raise MalformedError("note", f"signature line has no signature: {line[:80]!r}")
    validate_key_name(name)
    raw = b64decode(b64, "note signature")
    if len(raw) < 5:
        raise MalformedError("note", f"signature of {name!r} is shorter than 5 bytes")
    return NoteSignature(name, raw[:4], raw[4:])


def open_note(note: str, verifiers: Iterable[VerifierKey]) -> tuple[str, list[str]]:
    """Verify a note; return its text and the names of the known keys that signed it.

    Only Ed25519 (type 0x01) verifiers take part: cosignature keys (0x04) sign a different
    message, see `app.crypto.checkpoint`. Raises `MalformedError` for a malformed note and
    `VerificationError` if a known key's signature fails or no known key signed.
    """
    parsed = parse_note(note)
    known = {(v.origin, v.key_hash): v for v in verifiers if v.alg == ALG_ED25519}
    msg = parsed.text.encode("utf-8")
    signers: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in parsed.signatures:
        ident = (sig.name, sig.key_hash)
        verifier = known.get(ident)
        if verifier is None or ident in seen:
            continue  # unknown keys are ignored per spec; repeats add nothing
        seen.add(ident)
        try:
            verifier.verify(msg, sig.signature)
        except VerificationError as exc:
            raise VerificationError(
                f"note signature by {sig.name} ({sig.key_hash.hex()}) does not verify"
            ) from exc
        if sig.name not in signers:
            signers.append(sig.name)
    if not signers:
        names = sorted({v.origin for v in known.values()})
        raise VerificationError(f"note has no valid signature from a known key {names}")
    return parsed.text, signers
