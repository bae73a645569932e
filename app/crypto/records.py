"""Signed records: JSON objects carrying `origin`, `key_id` and an Ed25519 `signature`.

The signature is over the RFC 8785 canonical bytes of the object without `signature`, so
it covers `origin` and `key_id` too and survives any number of relays unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import re
from binascii import a2b_base64
from collections.abc import Callable, Mapping
from typing import Any

from app.crypto._encoding import b64decode, b64encode
from app.crypto.canonical import canonical_json
from app.crypto.errors import MalformedError, UnknownKeyError
from app.crypto.keys import NodeKey, VerifierKey, validate_origin
from app.errors import InvalidInput, VerificationError

__all__ = [
    "record_digest",
    "sign_record",
    "sign_record_canonical",
    "signing_bytes",
    "signing_bytes_from",
    "verify_record",
]

SIGNED_FIELDS = ("origin", "key_id", "signature")


def signing_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's signature covers: canonical JSON without `signature`."""
    return canonical_json({k: v for k, v in record.items() if k != "signature"})


# Strict base64: the only signature spelling `verify_record` accepts, and one whose JSON string
# form needs no escaping.
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def signing_bytes_from(record: Mapping[str, Any], canonical: bytes) -> bytes:
    """`signing_bytes(record)`, cut out of `canonical`, the record's canonical bytes WITH its
    signature (which a receiver has already, for its size check, digest and log entry).

    RFC 8785 encodes each member of an object on its own and orders members by key alone, so
    removing the top-level `"signature":"..."` member (and one comma beside it) from the
    canonical object gives the canonical object without it, exactly. The member is taken out
    only when its bytes occur once: a nested member with the same key and value (count 2)
    takes the slow path, and inside a JSON string those bytes cannot occur (`"` is escaped)."""
    signature = record.get("signature")
    if not isinstance(signature, str) or not _BASE64.fullmatch(signature):
        return signing_bytes(record)
    cut = _without_member(canonical, _signature_member(signature))
    return signing_bytes(record) if cut is None else cut


def _signature_member(signature: str) -> bytes:
    """The `"signature":"..."` member as RFC 8785 writes it (base64 needs no escaping)."""
    return b'"signature":"' + signature.encode("ascii") + b'"'


def _without_member(canonical: bytes, member: bytes) -> bytes | None:
    """`canonical` without `member` and one comma beside it; None unless it occurs once."""
    if canonical.count(member) != 1:
        return None
    start = canonical.index(member)
    end = start + len(member)
    if canonical[start - 1 : start] == b",":
        return canonical[: start - 1] + canonical[end:]
    if canonical[end : end + 1] == b",":
        return canonical[:start] + canonical[end + 1 :]
    return canonical[:start] + canonical[end:]


def sign_record(
    body: Mapping[str, Any], key: NodeKey, origin: str, *, owned: bool = False
) -> dict[str, Any]:
    """Return a signed copy of `body` with `origin`, `key_id` and `signature` set.

    Refuses a body that already names another origin: re-signing someone else's record
    as ours would silently take over its authorship. `owned=True`: the caller built `body`
    for this record and never changes it afterwards, so its values need no deep copy (the
    copy was a tenth of the cost of publishing a signal).
    """
    record = _unsigned(body, key, origin, owned=owned)
    record["signature"] = b64encode(key.sign(signing_bytes(record)))
    return record


# A stand-in signature while the record is encoded: RFC 8785 writes it as
# "\u0000signet-signature\u0000", which no base64 signature and no escaped text can be.
_PENDING = "\x00signet-signature\x00"
_PENDING_MEMBER = b'"signature":' + canonical_json(_PENDING)


def sign_record_canonical(
    body: Mapping[str, Any], key: NodeKey, origin: str, *, owned: bool = False
) -> tuple[dict[str, Any], bytes]:
    """`sign_record`, also returning the signed record's canonical bytes, from one encoding.

    The record is encoded once with a stand-in signature. The signed bytes are that encoding
    without the stand-in member (as in `signing_bytes_from`), and the signed record's bytes are
    it with the real signature's member in the stand-in's place: members are encoded on their
    own and ordered by key alone, so both are exactly what encoding each afresh would give.
    A publisher needs both (the record's size check and its log entry); encoding the record
    three times was a tenth of publishing a signal."""
    record = _unsigned(body, key, origin, owned=owned)
    record["signature"] = _PENDING
    encoded = canonical_json(record)
    signed = _without_member(encoded, _PENDING_MEMBER)
    if signed is None:  # the stand-in's bytes appear elsewhere too (never expected): exact path
        del record["signature"]
        record["signature"] = b64encode(key.sign(signing_bytes(record)))
        return record, canonical_json(record)
    signature = b64encode(key.sign(signed))
    record["signature"] = signature
    return record, encoded.replace(_PENDING_MEMBER, _signature_member(signature))


def _unsigned(body: Mapping[str, Any], key: NodeKey, origin: str, *, owned: bool) -> dict[str, Any]:
    """`body` with our `origin` and `key_id`, no signature; see `sign_record`."""
    checked = validate_origin(origin)
    if "origin" in body and body["origin"] != checked:
        raise InvalidInput("origin", f"body has origin {body['origin']!r}, signing as {checked!r}")
    if owned:
        record = {k: v for k, v in body.items() if k != "signature"}
    else:
        record = {k: copy.deepcopy(v) for k, v in body.items() if k != "signature"}
    record["origin"] = checked
    record["key_id"] = key.verifier(checked).key_id
    return record


def verify_record(
    record: Mapping[str, Any],
    resolve_key: Callable[[str], VerifierKey | None],
    *,
    canonical: bytes | None = None,
) -> None:
    """Verify a signed record against its origin's pinned key; raise `VerificationError`.

    `resolve_key(origin)` returns the pinned key or None; whoever relayed the record does
    not matter. Raises `UnknownKeyError` (a `VerificationError`) for an unpinned origin.
    `canonical`: the record's canonical bytes (signature included), if the caller has them:
    the signed bytes are then cut out of them instead of encoding the record again.
    """
    if type(record) is not dict and not isinstance(record, Mapping):
        raise VerificationError(f"record must be a JSON object, got {type(record).__name__}")
    origin, key_id, signature = record.get("origin"), record.get("key_id"), record.get("signature")
    if type(origin) is not str or type(key_id) is not str or type(signature) is not str:
        missing = [f for f in SIGNED_FIELDS if not isinstance(record.get(f), str)]
        if missing:
            raise VerificationError(f"record is missing string field(s): {', '.join(missing)}")
        origin, key_id, signature = str(origin), str(key_id), str(signature)  # str subclasses
    key = resolve_key(origin)
    if key is None:
        raise UnknownKeyError(f"record origin {origin!r} has no pinned verifier key")
    if key.origin != origin:
        # A resolver bug must not let one origin's key vouch for another origin's records.
        raise VerificationError(f"resolver returned the key of {key.origin!r} for {origin!r}")
    if key_id != key.key_id:
        raise VerificationError(
            f"record key_id {key_id!r} does not match the pinned key of {origin!r} ({key.key_id!r})"
        )
    sig = msg = None
    if canonical is not None and _SIGNATURE_64.fullmatch(signature):
        # The usual case, a receiver's: the signature spelled as the one canonical base64 of
        # 64 bytes (what `b64decode` would accept and then check by encoding again), and the
        # signed bytes cut out of the canonical ones with the comma before the member (it is
        # never first: "key_id" and "origin" sort before "signature"). Inside a JSON string
        # a quote is escaped, so `,"` occurs only between members; a nested member with the
        # same bytes (count 2) takes the exact path below.
        member = b',"signature":"' + signature.encode("ascii") + b'"'
        if canonical.count(member) == 1:
            sig = a2b_base64(signature)
            msg = canonical.replace(member, b"", 1)
    if sig is None or msg is None:
        try:
            sig = b64decode(signature, "signature")
            msg = (
                signing_bytes(record)
                if canonical is None
                else signing_bytes_from(record, canonical)
            )
        except MalformedError as exc:
            raise VerificationError(f"record from {origin!r} is malformed: {exc}") from exc
    try:
        key.verify(msg, sig)
    except VerificationError as exc:
        raise VerificationError(
            f"record signature does not verify under the pinned key of {origin!r} ({key_id})"
        ) from exc


# The canonical padded base64 of 64 bytes: 85 full characters, one holding the last 2 bits
# (its 4 low bits zero: A, Q, g or w) and "==".
_SIGNATURE_64 = re.compile(r"[A-Za-z0-9+/]{85}[AQgw]==")


def record_digest(record: Mapping[str, Any]) -> bytes:
    """SHA-256 of the record's canonical bytes, signature included (a stable record id)."""
    return hashlib.sha256(canonical_json(dict(record))).digest()
