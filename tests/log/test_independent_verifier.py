"""The served log checked by an RFC 6962 verifier and a C2SP signed-note verifier written
here from the specifications, without importing `app.crypto` (only PyNaCl, hashlib, rfc8785)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import nacl.signing
import rfc8785

from app.services.node import Node

# --- minimal RFC 6962 ----------------------------------------------------------------------


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, literally: split at the largest power of two < n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n])."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """RFC 6962 section 2.1.2 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


# --- minimal C2SP signed note --------------------------------------------------------------


def open_note(note: str, vkey: str) -> str:
    name, key_hash_hex, key_b64 = vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 1 and len(raw) == 33
    assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == key_hash_hex
    text, sep, sigs = note.rpartition("\n\n")
    assert sep
    text += "\n"
    verified = False
    for line in sigs.rstrip("\n").split("\n"):
        assert line.startswith("\u2014 ")
        signer, sig_b64 = line[2:].split(" ")
        sig = base64.b64decode(sig_b64)
        if signer == name and sig[:4].hex() == key_hash_hex:
            nacl.signing.VerifyKey(raw[1:]).verify(text.encode(), sig[4:])
            verified = True
    assert verified
    return text


def test_served_log_verifies_independently(
    client: Any, audit_auth: dict[str, str], node: Node, history: dict[str, list[str]]
) -> None:
    note = client.get("/v1/log/checkpoint", headers=audit_auth).text
    origin, size_s, root_b64 = open_note(note, node.verifier_key).rstrip("\n").split("\n")[:3]
    size, root = int(size_s), base64.b64decode(root_b64)
    assert origin == node.origin
    entries = client.get(
        "/v1/log/entries", headers=audit_auth, params={"start": 0, "end": size}
    ).json()
    leaves = [leaf(rfc8785.dumps(e["entry"])) for e in entries]
    assert len(leaves) == size
    assert mth(leaves) == root
    for i in range(size):
        r = client.get(
            "/v1/log/proof/inclusion", headers=audit_auth, params={"index": i, "size": size}
        )
        assert [base64.b64decode(h) for h in r.json()["hashes"]] == path(i, leaves)
    for m in range(1, size + 1):
        r = client.get(
            "/v1/log/proof/consistency", headers=audit_auth, params={"from": m, "to": size}
        )
        assert [base64.b64decode(h) for h in r.json()["hashes"]] == subproof(m, leaves, True)
    # Every published record verifies with PyNaCl against the node key, from first principles.
    public = nacl.signing.VerifyKey(base64.b64decode(node.verifier_key.split("+", 2)[2])[1:])
    checked = 0
    for e in entries:
        record = e["entry"].get("record")
        if record:
            unsigned = {k: v for k, v in record.items() if k != "signature"}
            public.verify(rfc8785.dumps(unsigned), base64.b64decode(record["signature"]))
            checked += 1
    assert checked >= 4
