"""Signed records: JSON objects carrying `origin`, `key_id` and an Ed25519 `signature`.

The signature is over the RFC 8785 canonical bytes of the object without `signature`, so
it covers `origin` and `key_id` too and survives any number of relays unchanged.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from app.crypto._encoding import b64decode, b64encode
from app.crypto.canonical import canonical_json
from app.crypto.errors import MalformedError, UnknownKeyError
from app.crypto.keys import NodeKey, VerifierKey, validate_origin
from app.errors import InvalidInput, VerificationError

__all__ = ["record_digest", "sign_record", "signing_bytes", "verify_record"]

SIGNED_FIELDS = ("origin", "key_id", "signature")


def signing_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's signature covers: canonical JSON without `signature`."""
    return canonical_json({k: v for k, v in record.items() if k != "signature"})


def sign_record(
    body: Mapping[str, Any], key: NodeKey, origin: str, *, owned: bool = False
) -> dict[str, Any]:
    """Return a signed copy of `body` with `origin`, `key_id` and `signature` set.

    Refuses a body that already names another origin: re-signing someone else's record
    as ours would silently take over its authorship. `owned=True`: the caller built `body`
    for this record and never changes it afterwards, so its values need no deep copy (the
    copy was a tenth of the cost of publishing a signal).
    """
    checked = validate_origin(origin)
    if "origin" in body and body["origin"] != checked:
        raise InvalidInput("origin", f"body has origin {body['origin']!r}, signing as {checked!r}")
    if owned:
        record = {k: v for k, v in body.items() if k != "signature"}
    else:
        record = {k: copy.deepcopy(v) for k, v in body.items() if k != "signature"}
    record["origin"] = checked
    record["key_id"] = key.verifier(checked).key_id
    record["signature"] = b64encode(key.sign(signing_bytes(record)))
    return record


def verify_record(
    record: Mapping[str, Any], resolve_key: Callable[[str], VerifierKey | None]
) -> None:
    """Verify a signed record against its origin's pinned key; raise `VerificationError`.

    `resolve_key(origin)` returns the pinned key or None; whoever relayed the record does
    not matter. Raises `UnknownKeyError` (a `VerificationError`) for an unpinned origin.
    """
    if not isinstance(record, Mapping):
        raise VerificationError(f"record must be a JSON object, got {type(record).__name__}")
    missing = [f for f in SIGNED_FIELDS if not isinstance(record.get(f), str)]
    if missing:
        raise VerificationError(f"record is missing string field(s): {', '.join(missing)}")
    origin: str = record["origin"]
    key_id: str = record["key_id"]
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
    try:
        sig = b64decode(record["signature"], "signature")
        msg = signing_bytes(record)
    except MalformedError as exc:
        raise VerificationError(f"record from {origin!r} is malformed: {exc}") from exc
    try:
        key.verify(msg, sig)
    except VerificationError as exc:
        raise VerificationError(
            f"record signature does not verify under the pinned key of {origin!r} ({key_id})"
        ) from exc


def record_digest(record: Mapping[str, Any]) -> bytes:
    """SHA-256 of the record's canonical bytes, signature included (a stable record id)."""
    return hashlib.sha256(canonical_json(dict(record))).digest()
