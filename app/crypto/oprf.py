"""RFC 9497 oblivious PRFs with the ristretto255-SHA512 suite: OPRF, VOPRF and POPRF modes.

Pure: no I/O, no randomness except libsodium's scalar generator (a caller may pass the blind and
the proof scalar, which is how the RFC's test vectors are reproduced). The group operations are
libsodium's ristretto255 through `pysodium`; scalar arithmetic modulo the group order is plain
Python integers (exact, and faster than a ctypes round trip per operation).

Protocol flow (VOPRF, the mode Signet uses)::

    client:  blind, B = blind(input)                    # B = r * HashToGroup(input)
    server:  Z[], proof = blind_evaluate(sk, pk, B[])   # Z = sk * B, one DLEQ proof for the batch
    client:  out[] = finalize(inputs, blinds, B[], Z[], proof, pk)   # verify, unblind, hash

`app.crypto.oprf_threshold` splits `sk` among key holders and combines their partial results;
every holder there is an RFC 9497 VOPRF server whose key is its share.

Errors (all `CryptoError`s, see `app.crypto.errors`): `MalformedError` for bytes that are not a
canonical element or scalar (400), `OprfInputError` for an input that hashes to the identity,
`ProofError` when a DLEQ proof does not verify (the caller decides whom to blame).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import NewType

import pysodium

from app.crypto.errors import MalformedError
from app.errors import CryptoError, ProofError

__all__ = [
    "MODE_OPRF",
    "MODE_POPRF",
    "MODE_VOPRF",
    "NE",
    "NH",
    "NS",
    "ORDER",
    "SUITE",
    "Element",
    "OprfInputError",
    "Scalar",
    "blind",
    "blind_evaluate",
    "compute_composites",
    "context_string",
    "derive_key_pair",
    "deserialize_element",
    "deserialize_scalar",
    "element_add",
    "evaluate",
    "expand_message_xmd",
    "finalize",
    "finalize_hash",
    "generate_proof",
    "hash_to_group",
    "hash_to_scalar",
    "poprf_blind",
    "poprf_blind_evaluate",
    "poprf_evaluate",
    "poprf_finalize",
    "public_key",
    "random_scalar",
    "scalar_bytes",
    "scalar_int",
    "scalar_mult",
    "scalar_mult_base",
    "unblind",
    "verify_proof",
]

SUITE = "ristretto255-SHA512"
MODE_OPRF, MODE_VOPRF, MODE_POPRF = 0, 1, 2
NE = 32  # serialized element
NS = 32  # serialized scalar
NH = 64  # SHA-512 output, the PRF output length
# The order of the ristretto255 group (the prime-order subgroup of edwards25519).
ORDER = 2**252 + 27742317777372353535851937790883648493

Element = NewType("Element", bytes)
"""A canonical ristretto255 encoding of a non-identity element (32 bytes)."""
Scalar = NewType("Scalar", bytes)
"""A canonical little-endian scalar in [0, ORDER) (32 bytes)."""

_IDENTITY = bytes(32)
_MODES = (MODE_OPRF, MODE_VOPRF, MODE_POPRF)


class OprfInputError(CryptoError):
    """RFC 9497 InvalidInputError: the input maps to the identity (or a tweak cancels the key)."""


def context_string(mode: int) -> bytes:
    """`"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier` (RFC 9497 section 3.1)."""
    if mode not in _MODES:
        raise ValueError(f"unknown RFC 9497 mode {mode}")
    return b"OPRFV1-" + bytes([mode]) + b"-" + SUITE.encode()


def _i2osp2(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _framed(*parts: bytes) -> bytes:
    # Every transcript in RFC 9497 frames its variable-length parts with a 2-byte length.
    return b"".join(_i2osp2(len(p)) + p for p in parts)


# --- hashing (RFC 9380 expand_message_xmd with SHA-512) -------------------------------------


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    if len(dst) > 255:
        dst = hashlib.sha512(b"H2C-OVERSIZE-DST-" + dst).digest()
    ell = -(-length // 64)
    if ell > 255 or length > 65535:
        raise ValueError("expand_message_xmd: requested length too large")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime)
    b0d = b0.digest()
    bi = hashlib.sha512(b0d + b"\x01" + dst_prime).digest()
    out = [bi]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0d, bi, strict=True))
        bi = hashlib.sha512(mixed + bytes([i]) + dst_prime).digest()
        out.append(bi)
    return b"".join(out)[:length]


def hash_to_group(msg: bytes, mode: int) -> Element:
    """HashToGroup: hash_to_ristretto255 (RFC 9380 appendix B) with DST "HashToGroup-"||ctx."""
    uniform = expand_message_xmd(msg, b"HashToGroup-" + context_string(mode), 64)
    return Element(pysodium.crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(msg: bytes, mode: int, dst: bytes | None = None) -> int:
    """HashToScalar: 64 uniform bytes, little-endian, reduced modulo the group order."""
    if dst is None:
        dst = b"HashToScalar-" + context_string(mode)
    return int.from_bytes(expand_message_xmd(msg, dst, 64), "little") % ORDER


# --- group and scalar helpers ---------------------------------------------------------------


def scalar_bytes(k: int) -> Scalar:
    """Serialize a scalar (reduced modulo the order) as 32 little-endian bytes."""
    return Scalar((k % ORDER).to_bytes(NS, "little"))


def scalar_int(s: bytes) -> int:
    return int.from_bytes(s, "little")


def deserialize_scalar(data: bytes, field: str = "scalar") -> int:
    """A canonical scalar (< order); raises MalformedError naming `field` otherwise."""
    if not isinstance(data, bytes | bytearray) or len(data) != NS:
        raise MalformedError(field, f"a scalar is {NS} bytes")
    k = int.from_bytes(data, "little")
    if k >= ORDER:
        raise MalformedError(field, "a scalar must be reduced modulo the group order")
    return k


def deserialize_element(data: bytes, field: str = "element") -> Element:
    """A canonical ristretto255 encoding of a non-identity element, else MalformedError.

    libsodium's `is_valid_point` refuses non-canonical encodings; the identity (whose only
    canonical encoding is 32 zero bytes) it accepts, so it is refused here, as RFC 9497 requires
    of DeserializeElement: an identity would make any key "prove" anything.
    """
    if not isinstance(data, bytes | bytearray) or len(data) != NE:
        raise MalformedError(field, f"an element is {NE} bytes")
    if bytes(data) == _IDENTITY:
        raise MalformedError(field, "the identity element is not allowed")
    if not pysodium.crypto_core_ristretto255_is_valid_point(bytes(data)):
        raise MalformedError(field, "not a canonical ristretto255 element (or the identity)")
    return Element(bytes(data))


def random_scalar() -> int:
    """A uniformly random non-zero scalar from libsodium's CSPRNG."""
    return scalar_int(pysodium.crypto_core_ristretto255_scalar_random())


def scalar_mult(k: int, p: bytes) -> Element:
    """k * P. Raises CryptoError if the result is the identity (k = 0 or P invalid)."""
    try:
        return Element(pysodium.crypto_scalarmult_ristretto255(scalar_bytes(k), p))
    except ValueError as exc:  # libsodium returns -1 for an identity result or a bad point
        raise CryptoError(f"ristretto255 scalar multiplication failed: {exc}") from None


def scalar_mult_base(k: int) -> Element:
    """k * G. Raises CryptoError for k = 0."""
    try:
        return Element(pysodium.crypto_scalarmult_ristretto255_base(scalar_bytes(k)))
    except ValueError as exc:
        raise CryptoError(f"ristretto255 base multiplication failed: {exc}") from None


def element_add(p: bytes, q: bytes) -> bytes:
    """P + Q (the result may be the identity, 32 zero bytes)."""
    return bytes(pysodium.crypto_core_ristretto255_add(p, q))


_GENERATOR = scalar_mult_base(1)


def public_key(sk: int) -> Element:
    return scalar_mult_base(sk)


def derive_key_pair(seed: bytes, info: bytes, mode: int) -> tuple[int, Element]:
    """RFC 9497 section 3.2.1 DeriveKeyPair: deterministic (skS, pkS) from a 32-byte seed."""
    derive_input = seed + _i2osp2(len(info)) + info
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), mode, dst)
        if sk != 0:
            return sk, public_key(sk)
    raise CryptoError("DeriveKeyPairError: no non-zero scalar in 256 tries")


# --- DLEQ proofs (RFC 9497 section 2.2) -----------------------------------------------------


def _composite_scalars(b: bytes, c: Sequence[bytes], d: Sequence[bytes], mode: int) -> list[int]:
    seed_dst = b"Seed-" + context_string(mode)
    seed = hashlib.sha512(_framed(b, seed_dst)).digest()
    out = []
    for i, (ci, di) in enumerate(zip(c, d, strict=True)):
        transcript = _i2osp2(len(seed)) + seed + _i2osp2(i) + _framed(ci, di) + b"Composite"
        out.append(hash_to_scalar(transcript, mode))
    return out


def _linear_combination(weights: Sequence[int], points: Sequence[bytes]) -> bytes:
    acc = _IDENTITY
    for w, p in zip(weights, points, strict=True):
        acc = element_add(acc, scalar_mult(w, p))
    return acc


def compute_composites(
    b: bytes, c: Sequence[bytes], d: Sequence[bytes], mode: int, k: int | None = None
) -> tuple[bytes, bytes]:
    """(M, Z): ComputeComposites, or ComputeCompositesFast when the key `k` is given."""
    if not c or len(c) != len(d):
        raise ValueError("a DLEQ proof covers one or more (C, D) pairs of equal count")
    weights = _composite_scalars(b, c, d, mode)
    m = _linear_combination(weights, c)
    z = scalar_mult(k, m) if k is not None else _linear_combination(weights, d)
    return m, z


def _challenge(b: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, mode: int) -> int:
    return hash_to_scalar(_framed(b, m, z, t2, t3) + b"Challenge", mode)


def generate_proof(
    k: int,
    a: bytes,
    b: bytes,
    c: Sequence[bytes],
    d: Sequence[bytes],
    mode: int,
    r: int | None = None,
) -> bytes:
    """A batched DLEQ proof that k*A = B and k*C[i] = D[i]; 64 bytes `c || s`."""
    m, z = compute_composites(b, c, d, mode, k=k)
    if r is None:
        r = random_scalar()
    t2 = scalar_mult(r, a)
    t3 = scalar_mult(r, m)
    ch = _challenge(b, m, z, t2, t3, mode)
    s = (r - ch * k) % ORDER
    return scalar_bytes(ch) + scalar_bytes(s)


def verify_proof(
    a: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes], proof: bytes, mode: int
) -> None:
    """Check a batched DLEQ proof; raises ProofError if it does not verify."""
    if not isinstance(proof, bytes | bytearray) or len(proof) != 2 * NS:
        raise MalformedError("proof", f"a proof is {2 * NS} bytes")
    ch = deserialize_scalar(bytes(proof[:NS]), "proof")
    s = deserialize_scalar(bytes(proof[NS:]), "proof")
    m, z = compute_composites(b, c, d, mode)
    try:
        t2 = element_add(_mult_or_identity(s, a), _mult_or_identity(ch, b))
        t3 = element_add(_mult_or_identity(s, m), _mult_or_identity(ch, z))
    except CryptoError:
        raise ProofError("DLEQ proof does not verify (degenerate elements)") from None
    if not hmac.compare_digest(scalar_bytes(_challenge(b, m, z, t2, t3, mode)), proof[:NS]):
        raise ProofError("DLEQ proof does not verify")


def _mult_or_identity(k: int, p: bytes) -> bytes:
    # libsodium refuses to produce the identity; a proof scalar may legitimately be zero.
    if k % ORDER == 0 or p == _IDENTITY:
        return _IDENTITY
    return scalar_mult(k, p)


# --- OPRF and VOPRF (RFC 9497 sections 3.3.1 and 3.3.2) -------------------------------------


def blind(input: bytes, mode: int = MODE_VOPRF, blind: int | None = None) -> tuple[int, Element]:
    """Client: (blind, blindedElement). `blind` is random unless given (test vectors)."""
    return _blind_input(input, mode, blind)


def _blind_input(input: bytes, mode: int, r: int | None) -> tuple[int, Element]:
    if r is None:
        r = random_scalar()
    if r % ORDER == 0:
        raise ValueError("the blind must be a non-zero scalar")
    element = hash_to_group(input, mode)
    if element == _IDENTITY:  # never happens for hash_to_ristretto255 in practice
        raise OprfInputError("the input maps to the identity element")
    return r, scalar_mult(r, element)


def blind_evaluate(
    sk: int,
    blinded: Sequence[bytes],
    mode: int = MODE_VOPRF,
    r: int | None = None,
) -> tuple[list[Element], bytes | None]:
    """Server: sk * B for each blinded element, and (VOPRF) one batched proof, else None.

    `blinded` must already be deserialized (`deserialize_element`): the identity or a
    non-canonical encoding never reaches the key.
    """
    if mode not in (MODE_OPRF, MODE_VOPRF):
        raise ValueError("blind_evaluate serves the OPRF and VOPRF modes; see poprf_*")
    evaluated = [scalar_mult(sk, b) for b in blinded]
    if mode == MODE_OPRF:
        return evaluated, None
    proof = generate_proof(sk, _GENERATOR, public_key(sk), blinded, evaluated, mode, r)
    return evaluated, proof


def unblind(blind: int, evaluated: bytes) -> bytes:
    """blind^-1 * evaluatedElement, serialized."""
    return scalar_mult(pow(blind, -1, ORDER), evaluated)


def finalize_hash(input: bytes, unblinded: bytes, info: bytes | None = None) -> bytes:
    """Hash(len||input [|| len||info] || len||unblindedElement || "Finalize")."""
    parts = [input] if info is None else [input, info]
    return hashlib.sha512(_framed(*parts, unblinded) + b"Finalize").digest()


def finalize(
    inputs: Sequence[bytes],
    blinds: Sequence[int],
    evaluated: Sequence[bytes],
    *,
    mode: int = MODE_VOPRF,
    blinded: Sequence[bytes] | None = None,
    proof: bytes | None = None,
    pk: bytes | None = None,
) -> list[bytes]:
    """Client: verify (VOPRF), unblind and hash; one 64-byte output per input."""
    if not (len(inputs) == len(blinds) == len(evaluated)):
        raise ValueError("inputs, blinds and evaluated elements differ in count")
    if mode == MODE_VOPRF:
        if blinded is None or proof is None or pk is None:
            raise ValueError("VOPRF finalize needs the blinded elements, the proof and pkS")
        verify_proof(_GENERATOR, pk, blinded, evaluated, proof, mode)
    elif mode != MODE_OPRF:
        raise ValueError("finalize serves the OPRF and VOPRF modes; see poprf_finalize")
    return [
        finalize_hash(x, unblind(r, z)) for x, r, z in zip(inputs, blinds, evaluated, strict=True)
    ]


def evaluate(sk: int, input: bytes, mode: int = MODE_VOPRF) -> bytes:
    """Server-side unblinded evaluation (RFC 9497 Evaluate): the PRF output for `input`."""
    element = hash_to_group(input, mode)
    return finalize_hash(input, scalar_mult(sk, element))


# --- POPRF (RFC 9497 section 3.3.3) ---------------------------------------------------------


def _tweak(info: bytes) -> int:
    return hash_to_scalar(b"Info" + _framed(info), MODE_POPRF)


def poprf_blind(
    input: bytes, info: bytes, pk: bytes, blind: int | None = None
) -> tuple[int, Element, bytes]:
    """Client: (blind, blindedElement, tweakedKey)."""
    tweaked = element_add(scalar_mult_base(_tweak(info)), pk)
    if tweaked == _IDENTITY:
        raise OprfInputError("the public input cancels the server key")
    b, blinded = _blind_input(input, MODE_POPRF, blind)
    return b, blinded, tweaked


def poprf_blind_evaluate(
    sk: int, blinded: Sequence[bytes], info: bytes, r: int | None = None
) -> tuple[list[Element], bytes]:
    """Server: (t^-1 * B for each B, proof) with t = sk + HashToScalar(info)."""
    t = (sk + _tweak(info)) % ORDER
    if t == 0:
        raise OprfInputError("InverseError: this public input maps to the private key")
    t_inv = pow(t, -1, ORDER)
    evaluated = [scalar_mult(t_inv, b) for b in blinded]
    proof = generate_proof(t, _GENERATOR, public_key(t), evaluated, blinded, MODE_POPRF, r)
    return evaluated, proof


def poprf_finalize(
    inputs: Sequence[bytes],
    blinds: Sequence[int],
    evaluated: Sequence[bytes],
    blinded: Sequence[bytes],
    proof: bytes,
    info: bytes,
    tweaked_key: bytes,
) -> list[bytes]:
    verify_proof(_GENERATOR, tweaked_key, evaluated, blinded, proof, MODE_POPRF)
    return [
        finalize_hash(x, unblind(r, z), info)
        for x, r, z in zip(inputs, blinds, evaluated, strict=True)
    ]


def poprf_evaluate(sk: int, input: bytes, info: bytes) -> bytes:
    t = (sk + _tweak(info)) % ORDER
    if t == 0:
        raise OprfInputError("InverseError: this public input maps to the private key")
    element = hash_to_group(input, MODE_POPRF)
    return finalize_hash(input, scalar_mult(pow(t, -1, ORDER), element), info)
