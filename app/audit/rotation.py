"""Key rotation records: the old key hands over to the new one, and the new one accepts.

A rotation record is a signed record (see `app.crypto.records`) of kind `key.rotation`:

    {"kind": "key.rotation", "v": 1, "origin": ..., "old_key": <vkey>, "new_key": <vkey>,
     "time": ..., "new_key_signature": <b64>, "key_id": <old key id>, "signature": <b64>}

`new_key_signature` is the new key's Ed25519 signature over the RFC 8785 bytes of the record
without `new_key_signature`, `key_id` and `signature`; `signature` is the old key's, over
everything else (so it covers the new key's acceptance too). Both are needed: the old key's
signature lets an auditor who pinned the old key trust the new one, and the new key's lets an
auditor who pinned the new key trust records signed before the rotation — a key cannot claim
a history it was never handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.crypto._encoding import b64decode, b64encode
from app.crypto.canonical import canonical_json
from app.crypto.errors import MalformedError
from app.crypto.keys import NodeKey, VerifierKey
from app.crypto.records import sign_record, verify_record
from app.errors import VerificationError

__all__ = ["ROTATION_KIND", "sign_rotation", "verify_rotation"]

ROTATION_KIND = "key.rotation"
_UNSIGNED_BY_NEW = ("new_key_signature", "key_id", "signature")


def _new_key_message(record: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in record.items() if k not in _UNSIGNED_BY_NEW})


def sign_rotation(old: NodeKey, new: NodeKey, origin: str, time: str) -> dict[str, Any]:
    """The rotation record handing `origin` over from `old` to `new`, signed by both."""
    body: dict[str, Any] = {
        "kind": ROTATION_KIND,
        "v": 1,
        "origin": origin,
        "old_key": old.verifier_key(origin),
        "new_key": new.verifier_key(origin),
        "time": time,
    }
    body["new_key_signature"] = b64encode(new.sign(_new_key_message(body)))
    return sign_record(body, old, origin)


def verify_rotation(record: Mapping[str, Any]) -> tuple[VerifierKey, VerifierKey]:
    """Check a rotation record is signed by both keys it names; return `(old, new)`.

    This proves only that the two keys agree with each other; whether either belongs to the
    origin is for the caller to decide (one of them must already be trusted).
    """
    if record.get("kind") != ROTATION_KIND:
        raise VerificationError(f"not a rotation record (kind {record.get('kind')!r})")
    try:
        origin = str(record["origin"])
        old = VerifierKey.parse(str(record["old_key"]))
        new = VerifierKey.parse(str(record["new_key"]))
        new_sig = b64decode(str(record["new_key_signature"]), "new_key_signature")
    except (KeyError, MalformedError) as exc:
        raise VerificationError(f"malformed rotation record: {exc}") from exc
    if old.origin != origin or new.origin != origin:
        raise VerificationError(f"rotation record for {origin!r} names keys of another origin")
    if old.key_id == new.key_id:
        raise VerificationError("rotation record names the same key twice")
    verify_record(record, lambda _origin: old)
    try:
        new.verify(_new_key_message(record), new_sig)
    except VerificationError as exc:
        raise VerificationError(
            f"rotation to {new.key_id} is not signed by the new key: {exc}"
        ) from exc
    return old, new
