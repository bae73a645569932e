"""An independent verifier of spec/vectors/: written from spec/signet-1.md, importing nothing
from `app/` (only PyNaCl, rfc8785 and the standard library), as another implementation would.

If the reference implementation and the specification drift apart, these checks fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
import rfc8785

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


# --- spec §2: verifier keys --------------------------------------------------------------------


def parse_vkey(text: str) -> tuple[str, str, bytes]:
    """`<name>+<8 hex>+<base64(0x01 || key)>`; the hash is the first 4 bytes of
    SHA-256(name || "\\n" || 0x01 || key). Returns (name, key id, raw public key)."""
    name, key_hash, b64 = text.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    assert len(raw) == 33 and raw[0] == 0x01
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    assert key_hash == expected, "key hash does not match the key"
    return name, key_hash, raw[1:]


def ed25519_ok(public: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public).verify(msg, sig)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


# --- spec §3: signed records -------------------------------------------------------------------


def record_ok(record: dict[str, Any], vkey: str) -> bool:
    name, key_id, public = parse_vkey(vkey)
    if record["origin"] != name or record["key_id"] != key_id:
        return False
    unsigned = {k: v for k, v in record.items() if k != "signature"}
    return ed25519_ok(public, rfc8785.dumps(unsigned), base64.b64decode(record["signature"]))


def test_signed_records_verify_and_tampering_fails() -> None:
    data = _load("records.json")
    assert len(data["records"]) == 3
    for item in data["records"]:
        record = item["record"]
        unsigned = {k: v for k, v in record.items() if k != "signature"}
        assert rfc8785.dumps(unsigned).hex() == item["signing_bytes_hex"]
        assert hashlib.sha256(rfc8785.dumps(record)).hexdigest() == item["digest_hex"]
        assert record_ok(record, item["verifier_key"]), item["name"]
    for bad in data["invalid"]:
        assert not record_ok(bad["record"], bad["verifier_key"]), bad["why"]


def test_rotation_record_is_signed_by_both_keys() -> None:
    rot = _load("records.json")["rotation"]
    record = rot["record"]
    assert record["kind"] == "key.rotation" and record["old_key"] == rot["old_key"]
    # The old key signs everything but `signature` (like any record) ...
    assert record_ok(record, record["old_key"])
    # ... and the new key signs the record without its own signature, key_id and signature.
    _, _, new_public = parse_vkey(record["new_key"])
    vouched = {
        k: v for k, v in record.items() if k not in ("new_key_signature", "key_id", "signature")
    }
    assert ed25519_ok(
        new_public, rfc8785.dumps(vouched), base64.b64decode(record["new_key_signature"])
    )


# --- spec §6: the exchange log (RFC 9162 hashing) ---------------------------------------------


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof too short"
    return r


def roots_from_consistency(
    m: int, n: int, path: list[bytes], old_root: bytes
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2: the (old root, new root) a consistency proof commits to (0 < m < n)."""
    if m & (m - 1) == 0:  # m is a power of two: the old root is a node of the new tree
        path = [old_root, *path]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        assert sn != 0, "proof too long"
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof too short"
    return fr, sr


def test_log_leaves_roots_and_proofs() -> None:
    data = _load("log.json")
    leaves = []
    for item in data["entries"]:
        canonical = rfc8785.dumps(item["entry"])
        assert canonical.hex() == item["leaf_data_hex"]
        h = leaf(canonical)
        assert h.hex() == item["leaf_hash_hex"]
        leaves.append(h)
    roots = {r["size"]: base64.b64decode(r["root_b64"]) for r in data["roots"]}
    for size, root in roots.items():
        assert mth(leaves[:size]) == root
    for proof in data["inclusion"]:
        i, n = proof["index"], proof["size"]
        path = [base64.b64decode(h) for h in proof["hashes_b64"]]
        assert root_from_inclusion(i, n, leaves[i], path) == roots[n]
    for proof in data["consistency"]:
        m, n = proof["from"], proof["to"]
        path = [base64.b64decode(h) for h in proof["hashes_b64"]]
        if m == n:
            assert path == []
            continue
        old, new = roots_from_consistency(m, n, path, roots[m])
        assert (old, new) == (roots[m], roots[n]), (m, n)


def test_checkpoint_is_a_signed_note_over_the_root() -> None:
    data = _load("log.json")
    text, _, sigs = data["checkpoint"].partition("\n\n")
    _origin, size, root_b64 = text.split("\n")[:3]
    assert int(size) == len(data["entries"])
    assert base64.b64decode(root_b64) == mth(
        [bytes.fromhex(e["leaf_hash_hex"]) for e in data["entries"]]
    )
    name, key_id, public = parse_vkey(data["verifier_key"])
    line = sigs.strip().split("\n")[0]
    assert line.startswith(f"\u2014 {name} ")
    blob = base64.b64decode(line.split(" ")[2])
    assert blob[:4].hex() == key_id
    assert ed25519_ok(public, (text + "\n").encode(), blob[4:])


# --- spec §8: HTTP message signatures (RFC 9421 profile) ---------------------------------------


def test_http_signature_bases_and_signatures() -> None:
    for req in _load("httpsig.json")["requests"]:
        headers = req["headers"]
        body = base64.b64decode(req["body_b64"])
        label, _, inner = headers["Signature-Input"].partition("=")
        assert label == "sig1"
        covered = inner[1 : inner.index(")")].split(" ")
        expected = ['"@method"', '"@target-uri"'] + (['"content-digest"'] if body else [])
        assert covered == expected
        lines = [f'"@method": {req["method"]}', f'"@target-uri": {req["url"]}']
        if body:
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
            assert headers["Content-Digest"] == f"sha-256=:{digest}:"
            lines.append(f'"content-digest": sha-256=:{digest}:')
        lines.append(f'"@signature-params": {inner}')
        base = "\n".join(lines)
        assert base == req["signature_base"]
        for param in ("created=", "expires=", 'nonce="', 'keyid="node-b.example"', 'alg="ed25519"'):
            assert param in inner
        _, _, public = parse_vkey(req["verifier_key"])
        sig_label, _, sig = headers["Signature"].partition("=")
        assert sig_label == "sig1" and sig.startswith(":") and sig.endswith(":")
        assert ed25519_ok(public, base.encode(), base64.b64decode(sig[1:-1]))


# --- spec §9: roster ---------------------------------------------------------------------------


def test_roster_quorum_and_digest() -> None:
    data = _load("roster.json")
    doc = data["document"]
    signing = b"signet-roster/1\n" + rfc8785.dumps(doc["signed"])
    assert signing.hex() == data["signing_bytes_hex"]
    assert hashlib.sha256(signing).hexdigest() == data["digest_hex"]
    stewards = {}
    for text in data["steward_keys"]:
        _, key_id, public = parse_vkey(text)
        stewards[key_id] = public
    good = {
        s["keyid"]
        for s in doc["signatures"]
        if s["keyid"] in stewards
        and ed25519_ok(stewards[s["keyid"]], signing, base64.b64decode(s["sig"]))
    }
    assert len(good) >= data["threshold"]


# --- spec §4: canonical forms (shape checks a second implementation can make) -----------------


@pytest.mark.parametrize("item", _load("canonical.json"), ids=lambda i: i["input"]["type"])
def test_canonical_outputs_have_the_specified_shape(item: dict[str, Any]) -> None:
    if "output" not in item:
        assert item["error"]["refused"] is True
        return
    t, v = item["output"]["type"], item["output"]["value"]
    hexlen = {
        "pdq": 64,
        "md5": 32,
        "sha256": 64,
        "url": 64,
        "email": 64,
        "phone": 64,
        "photodna": 288,
    }
    if t in hexlen:
        assert len(v) == hexlen[t] and v == v.lower() and int(v, 16) >= 0
    if t == "domain":
        assert v == v.lower() and not v.endswith(".") and v.isascii()
    if t == "keyword":
        assert v == " ".join(v.split()) and v == v.casefold()
    if t == "text_tlsh":
        assert v.startswith("T1") and len(v) == 72
    if t == "vpdq":
        frames = [line.split(",") for line in v.split("\n")]
        assert [int(f[0]) for f in frames] == sorted(int(f[0]) for f in frames)
        assert all(len(f) == 4 and f[2] == f[2].lower() for f in frames)
