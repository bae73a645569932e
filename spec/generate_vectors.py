"""Generate the signet/1 test vectors in spec/vectors/ from the reference implementation.

    .venv/bin/python spec/generate_vectors.py            # rewrite spec/vectors/*.json
    .venv/bin/python spec/generate_vectors.py --check    # exit 1 if any file would change

Deterministic: keys come from fixed seeds, times are fixed, Ed25519 signatures are deterministic,
so regenerating gives byte-identical files (a test checks it). Every vector is re-checked by
tests/spec/test_vectors_independent.py, which does not import `app/`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.audit.rotation import sign_rotation  # noqa: E402
from app.crypto import merkle  # noqa: E402
from app.crypto.canonical import canonical_json  # noqa: E402
from app.crypto.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from app.crypto.keys import NodeKey  # noqa: E402
from app.crypto.records import sign_record, signing_bytes  # noqa: E402
from app.errors import SignetError  # noqa: E402
from app.federation import httpsig  # noqa: E402
from app.federation import roster as rosters  # noqa: E402
from app.signals.types import canonicalize  # noqa: E402

OUT = ROOT / "spec" / "vectors"
ORIGIN = "node-a.example"
PEER = "node-b.example"
T0 = "2026-01-01T00:00:00Z"
T1 = "2027-01-01T00:00:00Z"


def _key(label: str) -> NodeKey:
    return NodeKey.from_seed(hashlib.sha256(f"signet/1 test vector key: {label}".encode()).digest())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- canonical forms -------------------------------------------------------------------------

CANONICAL_CASES: list[dict[str, Any]] = [
    {
        "type": "pdq",
        "value": "F8F8F0CEE0F4A84F06370A22038F63F0B36E2ED596621E1D33E6B39C4E9C9B22",
        "quality": 90,
    },
    {
        "type": "pdq",
        "value": "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
        "quality": 49,
    },
    {"type": "pdq", "value": "f8f8", "quality": 90},
    {"type": "md5", "value": "D41D8CD98F00B204E9800998ECF8427E"},
    {"type": "md5", "value": "0123456789ABCDEF0123456789abcdef"},
    {"type": "sha256", "value": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"},
    {"type": "sha256", "value": "AB" * 32},
    {"type": "domain", "value": "Example.COM."},
    {"type": "domain", "value": "bücher.example"},
    {"type": "domain", "value": "127.0.0.1"},
    {"type": "domain", "value": "localhost"},
    {"type": "url", "value": "HTTP://User:pw@Example.COM:80/a/./b/../c?q=1#frag"},
    {"type": "url", "value": "https://bücher.example/%7efoo/%c3%a9"},
    {"type": "url", "value": "http://example.com\\@evil.example/x"},
    {"type": "url", "value": "javascript:alert(1)"},
    {"type": "keyword", "value": "  \uff23\uff4f\uff44\uff45\u200bword  TWO "},
    {"type": "keyword", "value": "ﬁsh  STRASSE"},
    {"type": "keyword", "value": ""},
    {"type": "text_tlsh", "value": "t1" + "a" * 70},
    {"type": "email", "value": "aa" * 32, "key_id": "fed-2026"},
    {"type": "email", "value": "jane@example.com", "key_id": "fed-2026"},
    {"type": "phone", "value": "BB" * 32, "key_id": "fed-2026"},
    {"type": "photodna", "value": "00" * 144},
    {
        "type": "vpdq",
        "value": "1,100,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,1.0\r\n"
        "0,90,F8F8F0CEE0F4A84F06370A22038F63F0B36E2ED596621E1D33E6B39C4E9C9B22,0\n",
    },
]


def canonical_vectors() -> list[dict[str, Any]]:
    out = []
    for case in CANONICAL_CASES:
        kwargs: dict[str, Any] = {}
        if "quality" in case:
            kwargs["quality"] = case["quality"]
        if "key_id" in case:
            kwargs["key_id"] = case["key_id"]
        entry: dict[str, Any] = {"input": case}
        try:
            canon = canonicalize(case["type"], case["value"], **kwargs)
        except SignetError as exc:
            entry["error"] = {"field": getattr(exc, "field", ""), "refused": True}
        else:
            entry["output"] = {"type": canon.type, "value": canon.value, "extra": canon.extra}
        out.append(entry)
    return out


# --- records ---------------------------------------------------------------------------------


def record_vectors() -> dict[str, Any]:
    key_a, key_b = _key(ORIGIN), _key(PEER)
    vkey_a, vkey_b = key_a.verifier_key(ORIGIN), key_b.verifier_key(PEER)
    signal = sign_record(
        {
            "kind": "signal",
            "v": 1,
            "id": "01jq0000000000000000000001",
            "version": 1,
            "type": "pdq",
            "value": "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
            "attrs": {"quality": 90},
            "categories": ["csam"],
            "indicators": [],
            "opinion": "positive",
            "confidence": 80,
            "reviewed": True,
            "valid_from": T0,
            "valid_until": T1,
            "audience": {"tlp": "green", "peers": [], "hops": 1},
        },
        key_a,
        ORIGIN,
    )
    retraction = sign_record(
        {
            "kind": "retraction",
            "v": 1,
            "signal": {"origin": ORIGIN, "id": signal["id"], "version": 1},
            "reason": "false positive on review",
            "time": "2026-02-01T00:00:00Z",
        },
        key_a,
        ORIGIN,
    )
    feedback = sign_record(
        {
            "kind": "feedback",
            "v": 1,
            "id": "01jq0000000000000000000002",
            "signal": {"origin": ORIGIN, "id": signal["id"]},
            "verdict": "true_positive",
            "time": "2026-01-15T00:00:00Z",
        },
        key_b,
        PEER,
    )
    rotation = sign_rotation(key_a, _key(ORIGIN + " rotated"), ORIGIN, "2026-03-01T00:00:00Z")
    records = []
    for name, rec, vkey in (
        ("signal", signal, vkey_a),
        ("retraction", retraction, vkey_a),
        ("feedback", feedback, vkey_b),
    ):
        records.append(
            {
                "name": name,
                "verifier_key": vkey,
                "record": rec,
                "signing_bytes_hex": signing_bytes(rec).hex(),
                "digest_hex": hashlib.sha256(canonical_json(rec)).hexdigest(),
            }
        )
    tampered = json.loads(json.dumps(signal))
    tampered["value"] = "0" * 64
    return {
        "keys": {ORIGIN: vkey_a, PEER: vkey_b},
        "records": records,
        "rotation": {"record": rotation, "old_key": vkey_a},
        "invalid": [
            {"why": "value changed after signing", "verifier_key": vkey_a, "record": tampered}
        ],
    }


# --- log -------------------------------------------------------------------------------------


def log_vectors() -> dict[str, Any]:
    key_a = _key(ORIGIN)
    recs = record_vectors()["records"]
    entries: list[dict[str, Any]] = [
        {"kind": "signal", "time": T0, "record": recs[0]["record"]},
        {
            "kind": "signal",
            "time": T0,
            "commitment": hashlib.sha256(b"\x07" * 32 + b'{"example":"amber record"}').hexdigest(),
            "tlp": "amber",
        },
        {"kind": "received", "time": T0, "from": PEER, "record": recs[2]["record"]},
        {"kind": "retraction", "time": "2026-02-01T00:00:00Z", "record": recs[1]["record"]},
        {
            "kind": "apikey.created",
            "time": T0,
            "key": 1,
            "name": "platform",
            "prefix": "sk_ab",
            "scopes": ["match", "submit"],
        },
        {
            "kind": "roster",
            "time": T0,
            "federation": "fed.example",
            "version": 1,
            "digest": "00" * 32,
            "source": "https://stewards.example/roster.json",
            "changes": [],
        },
        {
            # A receipt (LOG-6), shown beside the retraction it names; in a real log it follows
            # the receiver's own `received` entry of a peer's retraction.
            "kind": "applied",
            "time": "2026-02-01T00:00:05Z",
            "action": "retraction",
            "signal": {
                "origin": recs[1]["record"]["signal"]["origin"],
                "id": recs[1]["record"]["signal"]["id"],
            },
            "digest": recs[1]["digest_hex"],
            "received": 3,
        },
        {
            "kind": "applied",
            "time": "2026-03-01T00:01:00Z",
            "action": "expiry",
            "signal": {
                "origin": recs[0]["record"]["origin"],
                "id": recs[0]["record"]["id"],
                "version": recs[0]["record"]["version"],
            },
            "digest": recs[0]["digest_hex"],
            "valid_until": recs[0]["record"]["valid_until"],
        },
        {
            "kind": "delivered",
            "time": T0,
            "to": PEER,
            "after": 0,
            "up_to": 4,
            "count": 1,
            "digests": [recs[0]["digest_hex"]],
        },
    ]
    leaves_data = [canonical_json(e) for e in entries]
    leaves = [merkle.leaf_hash(d) for d in leaves_data]

    def get(level: int, idx: int) -> bytes:
        span = 1 << level
        return merkle.root_from_leaves(leaves[idx * span : (idx + 1) * span])

    size = len(leaves)
    root = merkle.root_from_leaves(leaves)
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root), key_a)
    return {
        "verifier_key": key_a.verifier_key(ORIGIN),
        "entries": [
            {"index": i, "entry": e, "leaf_data_hex": d.hex(), "leaf_hash_hex": h.hex()}
            for i, (e, d, h) in enumerate(zip(entries, leaves_data, leaves, strict=True))
        ],
        "roots": [
            {"size": n, "root_b64": _b64(merkle.root_from_leaves(leaves[:n]))}
            for n in range(0, size + 1)
        ],
        "checkpoint": note,
        "inclusion": [
            {
                "index": i,
                "size": n,
                "hashes_b64": [_b64(h) for h in merkle.inclusion_proof(i, n, get)],
            }
            for n in (size, 5)
            for i in range(n)
        ],
        "consistency": [
            {
                "from": m,
                "to": n,
                "hashes_b64": [_b64(h) for h in merkle.consistency_proof(m, n, get)],
            }
            for n in (size,)
            for m in range(1, n + 1)
        ],
    }


# --- HTTP signatures -------------------------------------------------------------------------


def httpsig_vectors() -> dict[str, Any]:
    key_b = _key(PEER)
    out = []
    for method, url, body in (
        ("GET", f"https://{ORIGIN}/federation/v1/records?after=0&limit=500", b""),
        (
            "POST",
            f"https://{ORIGIN}/federation/v1/notify",
            b'{"checkpoint":"...","origin":"node-b.example","size":7}',
        ),
    ):
        captured: dict[str, bytes] = {}

        def signer(base: bytes, captured: dict[str, bytes] = captured) -> bytes:
            captured["base"] = base
            return key_b.sign(base)

        headers = httpsig.sign_request(
            method,
            url,
            {},
            body,
            keyid=PEER,
            sign=signer,
            created=1767225600,
            nonce="dGVzdCB2ZWN0b3Igbm9uY2U",
        )
        out.append(
            {
                "method": method,
                "url": url,
                "body_b64": _b64(body),
                "headers": headers,
                "signature_base": captured["base"].decode(),
                "verifier_key": key_b.verifier_key(PEER),
            }
        )
    return {"requests": out}


# --- roster ----------------------------------------------------------------------------------


def roster_vectors() -> dict[str, Any]:
    stewards = [_key(f"steward{i}.example") for i in range(3)]
    vkeys = [k.verifier(f"steward{i}.example") for i, k in enumerate(stewards)]
    doc: dict[str, Any] = {
        "signed": {
            "type": "signet-roster",
            "spec": 1,
            "federation": "fed.example",
            "version": 1,
            "expires": "2099-01-01T00:00:00Z",
            "stewards": {"threshold": 2, "keys": [str(v) for v in vkeys]},
            "members": [
                {
                    "origin": ORIGIN,
                    "key": _key(ORIGIN).verifier_key(ORIGIN),
                    "url": f"https://{ORIGIN}",
                    "roles": ["member", "witness"],
                    "status": "active",
                },
                {
                    "origin": PEER,
                    "key": _key(PEER).verifier_key(PEER),
                    "url": f"https://{PEER}",
                    "roles": ["member"],
                    "status": "active",
                },
            ],
            "on_removal": "drop",
        },
        "signatures": [],
    }
    for k, v in zip(stewards[:2], vkeys[:2], strict=True):
        doc = rosters.sign(doc, k, v)
    return {
        "document": doc,
        "signing_bytes_hex": rosters.signing_bytes(doc).hex(),
        "digest_hex": rosters.digest(doc),
        "threshold": 2,
        "steward_keys": [str(v) for v in vkeys],
    }


FILES = {
    "canonical.json": canonical_vectors,
    "records.json": record_vectors,
    "log.json": log_vectors,
    "httpsig.json": httpsig_vectors,
    "roster.json": roster_vectors,
}


def render() -> dict[str, bytes]:
    return {
        name: (json.dumps(make(), indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
        for name, make in FILES.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    files = render()
    if args.check:
        stale = [n for n, data in files.items() if (args.out / n).read_bytes() != data]
        for n in stale:
            print(f"stale: {args.out / n}", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
