"""Ed25519 node keys, C2SP signed-note verifier keys and the one signature verifier.

PyNaCl (libsodium) is the only Ed25519 verifier in Signet: two verifiers disagree on
low-order and non-canonical edge cases, and two nodes must never disagree about whether
the same signed record is valid. Everything that verifies calls `verify_ed25519`.

Key file format (decision): a PKCS#8 PEM Ed25519 private key (RFC 8410), exactly the
48-byte DER that `openssl genpkey -algorithm ed25519` writes. Standard tools can create,
inspect and back it up, and it does not embed the origin: the origin is a setting, so
renaming a node is not a key change.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NewType, NoReturn

import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_sign_open

from app.crypto._encoding import b64decode, b64encode
from app.crypto.errors import KeyFileError, MalformedError
from app.errors import VerificationError

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "KeyId",
    "NodeKey",
    "Origin",
    "VerifierKey",
    "key_hash",
    "parse_note_private_key",
    "validate_key_name",
    "validate_origin",
    "verifier_key_string",
    "verify_ed25519",
]

Origin = NewType("Origin", str)
"""A validated Signet origin, e.g. `ngo.example`."""

KeyId = NewType("KeyId", str)
"""8 lowercase hex digits: the 4-byte signed-note key hash, `key_id` in signed records."""

ALG_ED25519 = 0x01
"""signed-note signature type: Ed25519 over the note text."""

ALG_COSIGNATURE_V1 = 0x04
"""tlog-cosignature: timestamped Ed25519 cosignature/v1."""

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32

# One DNS label: lowercase letters, digits and inner hyphens, 1-63 characters.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_MAX_ORIGIN_LEN = 253

# RFC 8410 PKCS#8 wrapping of an Ed25519 seed: version 0, OID 1.3.101.112, OCTET STRING.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN = "-----BEGIN PRIVATE KEY-----"
_PEM_END = "-----END PRIVATE KEY-----"


def validate_origin(value: str) -> Origin:
    """Check a Signet origin and return it typed.

    Grammar (decision): a lowercase DNS name, dot-separated labels of `a-z`, `0-9` and
    inner `-`, at most 253 characters; a single label (`localhost`) is allowed. No port,
    path, scheme, upper case or trailing dot: an origin names a node, it is not an address
    (peer URLs are configured separately), and one spelling per node keeps key hashes,
    checkpoint origin lines and record `origin` fields comparable byte for byte.
    """
    if not isinstance(value, str) or not value:
        raise MalformedError("origin", "must be a non-empty string")
    if len(value) > _MAX_ORIGIN_LEN:
        raise MalformedError("origin", f"longer than {_MAX_ORIGIN_LEN} characters")
    if _ORIGIN_RE.fullmatch(value) is None:
        raise MalformedError(
            "origin",
            f"{value[:80]!r} is not a lowercase DNS-like name (labels of a-z, 0-9, '-')",
        )
    return Origin(value)


def validate_key_name(name: str) -> str:
    """Check a C2SP signed-note key name: non-empty, no whitespace, no '+', no controls."""
    if not isinstance(name, str) or not name:
        raise MalformedError("key name", "must be a non-empty string")
    if "+" in name or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise MalformedError("key name", f"{name[:80]!r} contains '+', whitespace or controls")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedError("key name", "not valid UTF-8") from exc
    return name


def key_hash(name: str, alg: int, public_key: bytes) -> bytes:
    """The 4-byte signed-note key hash: SHA-256(name || "\\n" || alg || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def verifier_key_string(origin: str, public_key: bytes, alg: int = ALG_ED25519) -> str:
    """`<name>+<8 hex key hash>+<base64(alg || public key)>` (C2SP signed-note vkey)."""
    return str(VerifierKey.from_public_key(origin, public_key, alg=alg, any_name=True))


def verify_ed25519(public_key: bytes, msg: bytes, sig: bytes) -> None:
    """Verify an Ed25519 signature with libsodium; raise `VerificationError` on any failure.

    Wrong-length keys or signatures are failures too, never a different exception type,
    so callers have one thing to catch.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise VerificationError(
            f"Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
        )
    if len(sig) != SIGNATURE_SIZE:
        raise VerificationError(f"Ed25519 signature must be {SIGNATURE_SIZE} bytes, got {len(sig)}")
    try:
        nacl.signing.VerifyKey(public_key).verify(msg, sig)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        # BadSignatureError is a CryptoError; libsodium also lands here for low-order keys.
        raise VerificationError(
            f"Ed25519 signature does not verify under key {public_key.hex()}"
        ) from exc


@dataclass(frozen=True)
class VerifierKey:
    """A parsed signed-note verifier key (`vkey`).

    `origin` is the key name; a Signet origin unless parsed with `any_name=True`.
    `alg` is the signature type byte: 0x01 for notes and records, 0x04 for cosignatures.
    """

    origin: str
    key_hash: bytes
    public_key: bytes
    alg: int = ALG_ED25519

    @classmethod
    def from_public_key(
        cls, origin: str, public_key: bytes, *, alg: int = ALG_ED25519, any_name: bool = False
    ) -> VerifierKey:
        """Build the verifier key for `origin` and a raw 32-byte public key."""
        _check_name(origin, any_name)
        if len(public_key) != PUBLIC_KEY_SIZE:
            raise MalformedError("public key", f"must be {PUBLIC_KEY_SIZE} bytes")
        if alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise MalformedError("vkey", f"unsupported signature type 0x{alg:02x}")
        return cls(origin, key_hash(origin, alg, public_key), bytes(public_key), alg)

    @classmethod
    def parse(cls, text: str, *, alg: int = ALG_ED25519, any_name: bool = False) -> VerifierKey:
        """Parse `<name>+<hash>+<base64(alg || key)>`, checking name, type, length and hash.

        `alg` is the only signature type accepted (0x01 by default; 0x04 for witnesses).
        """
        # maxsplit: the base64 key may itself contain '+'; the name and hash cannot.
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise MalformedError("vkey", f"expected <name>+<hash>+<key>, got {text[:120]!r}")
        name, hash_hex, key_b64 = parts
        _check_name(name, any_name)
        if re.fullmatch(r"[0-9a-f]{8}", hash_hex) is None:
            raise MalformedError("vkey", f"key hash {hash_hex!r} is not 8 lowercase hex digits")
        raw = b64decode(key_b64, "vkey")
        if len(raw) != 1 + PUBLIC_KEY_SIZE:
            raise MalformedError("vkey", f"key must be 1 + {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
        if raw[0] != alg:
            raise MalformedError("vkey", f"signature type 0x{raw[0]:02x}, expected 0x{alg:02x}")
        key = cls.from_public_key(name, raw[1:], alg=alg, any_name=True)
        if key.key_hash.hex() != hash_hex:
            raise MalformedError(
                "vkey", f"key hash {hash_hex} does not match the key (computed {key.key_id})"
            )
        return key

    @property
    def key_id(self) -> KeyId:
        """The key hash as 8 lowercase hex digits."""
        return KeyId(self.key_hash.hex())

    def verify(self, msg: bytes, sig: bytes) -> None:
        """Verify a raw Ed25519 signature by this key; raise `VerificationError`.

        The same checks as `verify_ed25519`, calling PyNaCl's `crypto_sign_open` binding
        directly (what `VerifyKey.verify` does after re-checking its arguments: a receiver
        verifies thousands of records a second under the same few keys)."""
        if len(sig) != SIGNATURE_SIZE:
            raise VerificationError(
                f"Ed25519 signature must be {SIGNATURE_SIZE} bytes, got {len(sig)}"
            )
        try:
            crypto_sign_open(sig + msg, self._checked_public_key)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise VerificationError(
                f"Ed25519 signature does not verify under key {self.public_key.hex()}"
            ) from exc

    @cached_property
    def _checked_public_key(self) -> bytes:
        # Raises ValueError for a key of the wrong length (then not cached).
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(f"Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes")
        return bytes(self.public_key)

    def __str__(self) -> str:
        return f"{self.origin}+{self.key_id}+{b64encode(bytes([self.alg]) + self.public_key)}"


def _check_name(name: str, any_name: bool) -> None:
    if any_name:
        validate_key_name(name)
    else:
        validate_origin(name)


class NodeKey:
    """This node's Ed25519 signing key. Never printed, never logged."""

    __slots__ = ("_key", "_verifiers")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._key = signing_key
        self._verifiers: dict[tuple[str, int], VerifierKey] = {}

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh key from the OS CSPRNG."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        """The key for a 32-byte RFC 8032 seed."""
        if len(seed) != SEED_SIZE:
            raise MalformedError("seed", f"must be {SEED_SIZE} bytes, got {len(seed)}")
        return cls(nacl.signing.SigningKey(bytes(seed)))

    @classmethod
    def load(cls, path: Path) -> NodeKey:
        """Load a PKCS#8 PEM key file, refusing one that group or others can read."""
        try:
            return cls._load(Path(path))
        except FileNotFoundError as exc:
            raise KeyFileError(f"{path}: node key file does not exist") from exc

    @classmethod
    def _load(cls, path: Path) -> NodeKey:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot open node key file: {exc.strerror}") from exc
        try:
            # fstat the descriptor we read, not the path, so the checked file is the read file.
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"{path}: node key file is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"{path}: node key file is readable or writable by group/others "
                    f"(mode {mode:04o}); refusing to use it. Fix with: chmod 600 {path}"
                )
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read(4096)
        finally:
            os.close(fd)
        return cls.from_seed(_seed_from_pem(data, path))

    @classmethod
    def load_or_create(cls, path: Path) -> NodeKey:
        """Load the key at `path`, or create it (mode 0600, atomically) if it does not exist.

        Two processes racing here end up with the same key: the file appears under its final
        name only complete (hard link of a fully written temp file), and never replaces one.
        """
        path = Path(path)
        with contextlib.suppress(FileNotFoundError):
            return cls._load(path)
        key = cls.generate()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_pem_from_seed(key._seed()))
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    # Someone else created it first: use theirs so there is one node key.
                    return cls._load(path)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        except KeyFileError:
            raise
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot create node key file: {exc}") from exc
        return key

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return bytes(self._key.verify_key)

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `msg`."""
        return bytes(self._key.sign(msg).signature)

    def verifier(self, origin: str, *, alg: int = ALG_ED25519) -> VerifierKey:
        """This key's `VerifierKey` under `origin` (cached: every signature names its key id)."""
        found = self._verifiers.get((origin, alg))
        if found is None:
            found = self._verifiers[(origin, alg)] = VerifierKey.from_public_key(
                origin, self.public_key, alg=alg, any_name=True
            )
        return found

    def verifier_key(self, origin: str) -> str:
        """This key's signed-note verifier key string under `origin`."""
        return str(self.verifier(origin))

    def _seed(self) -> bytes:
        return bytes(self._key)

    def __repr__(self) -> str:
        return f"NodeKey(public_key={self.public_key.hex()})"

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the secret into caches, queues or logs of whatever pickles it.
        raise TypeError("NodeKey cannot be pickled")


def parse_note_private_key(text: str) -> tuple[str, NodeKey]:
    """Parse a Go `sumdb/note` private key, `PRIVATE+KEY+<name>+<hash>+<base64(0x01||seed)>`.

    For interoperability with Go tooling and its test vectors; Signet's own key file is PEM.
    """
    parts = text.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise MalformedError("private key", "expected PRIVATE+KEY+<name>+<hash>+<key>")
    name, hash_hex, key_b64 = parts[2:]
    validate_key_name(name)
    raw = b64decode(key_b64, "private key")
    if len(raw) != 1 + SEED_SIZE or raw[0] != ALG_ED25519:
        raise MalformedError("private key", "expected 0x01 followed by a 32-byte seed")
    key = NodeKey.from_seed(raw[1:])
    computed = key_hash(name, ALG_ED25519, key.public_key).hex()
    if computed != hash_hex:
        raise MalformedError("private key", f"key hash {hash_hex} does not match ({computed})")
    return name, key


def _pem_from_seed(seed: bytes) -> bytes:
    body = base64.b64encode(_PKCS8_PREFIX + seed).decode("ascii")
    return f"{_PEM_BEGIN}\n{body}\n{_PEM_END}\n".encode("ascii")


def _seed_from_pem(data: bytes, path: Path) -> bytes:
    # Never echo file content in these messages: it is the secret.
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{path}: node key file is not a PEM file") from exc
    lines = text.splitlines()
    if len(lines) < 3 or lines[0].strip() != _PEM_BEGIN or lines[-1].strip() != _PEM_END:
        raise KeyFileError(f"{path}: node key file is not a PEM 'PRIVATE KEY' (PKCS#8)")
    try:
        der = base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{path}: node key file has invalid base64") from exc
    if len(der) != len(_PKCS8_PREFIX) + SEED_SIZE or not der.startswith(_PKCS8_PREFIX):
        raise KeyFileError(
            f"{path}: node key file is not an RFC 8410 Ed25519 PKCS#8 key "
            "(as written by `openssl genpkey -algorithm ed25519`)"
        )
    return der[len(_PKCS8_PREFIX) :]


def _fsync_dir(directory: Path) -> None:
    # Make the new directory entry durable, so a crash cannot lose a key already in use.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
