from __future__ import annotations

import os
import pickle
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto.errors import KeyFileError, MalformedError
from app.crypto.keys import (
    ALG_COSIGNATURE_V1,
    NodeKey,
    VerifierKey,
    parse_note_private_key,
    validate_origin,
    verifier_key_string,
    verify_ed25519,
)
from app.errors import ConfigError, CryptoError, InvalidInput, VerificationError

from ._vectors import load

NOTE_CASES = load("signed_note.json")["cases"]
SEED = bytes(range(32))


@pytest.mark.parametrize("origin", ["ngo.example", "a", "localhost", "x-1.b2.example", "1.2"])
def test_valid_origins(origin: str) -> None:
    assert validate_origin(origin) == origin


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "Ngo.example",
        "ngo.example.",
        ".ngo",
        "ngo..example",
        "-ngo.example",
        "ngo-.example",
        "ngo.example:8443",
        "ngo.example/log",
        "ngo+example",
        "ngo example",
        "ngo\n",
        "é.example",
        "a" * 64,
        ".".join(["a" * 60] * 5),
    ],
)
def test_invalid_origins(origin: str) -> None:
    with pytest.raises(MalformedError) as exc:
        validate_origin(origin)
    assert isinstance(exc.value, InvalidInput) and isinstance(exc.value, CryptoError)


@pytest.mark.parametrize("case", NOTE_CASES, ids=lambda c: c["vkey"].split("+")[0])
def test_vkey_vectors_round_trip(case: dict[str, str]) -> None:
    key = VerifierKey.parse(case["vkey"], any_name=True)
    assert str(key) == case["vkey"]
    assert key.key_id == case["vkey"].split("+")[1]
    assert verifier_key_string(key.origin, key.public_key) == case["vkey"]


def test_note_private_key_vector() -> None:
    case = NOTE_CASES[0]
    name, key = parse_note_private_key(case["skey"])
    assert name == "PeterNeumann"
    assert key.verifier_key(name) == case["vkey"]


def test_vkey_parse_requires_an_origin_by_default() -> None:
    with pytest.raises(MalformedError):
        VerifierKey.parse(NOTE_CASES[0]["vkey"])  # "PeterNeumann" is not lowercase


def _vkey(name: str = "ngo.example", alg: int = 1) -> str:
    return verifier_key_string(name, NodeKey.from_seed(SEED).public_key, alg=alg)


def test_vkey_format() -> None:
    key = NodeKey.from_seed(SEED)
    vkey = VerifierKey.parse(key.verifier_key("ngo.example"))
    name, hash_hex, b64 = str(vkey).split("+", 2)
    import base64
    import hashlib

    assert name == "ngo.example"
    raw = base64.b64decode(b64)
    assert raw == b"\x01" + key.public_key
    assert bytes.fromhex(hash_hex) == hashlib.sha256(b"ngo.example\n" + raw).digest()[:4]
    assert vkey.key_hash.hex() == hash_hex == vkey.key_id


@pytest.mark.parametrize(
    "bad",
    [
        "ngo.example",
        "ngo.example+00000000",
        _vkey().replace("ngo.example+", "ngo.examplf+"),  # hash no longer matches
        _vkey().replace("+", "+0", 1),  # 9 hex digits
        _vkey().split("+")[0]
        + "+"
        + _vkey().split("+")[1].upper()
        + "+"
        + _vkey().split("+", 2)[2],
        _vkey()[:-1],  # truncated base64
        _vkey() + "AA",  # trailing bytes
        _vkey(alg=ALG_COSIGNATURE_V1),  # type 0x04 where 0x01 expected
    ],
)
def test_vkey_parse_rejects(bad: str) -> None:
    with pytest.raises(MalformedError):
        VerifierKey.parse(bad)


def test_cosigner_vkey_parses_with_its_type() -> None:
    vkey = VerifierKey.parse(_vkey(alg=ALG_COSIGNATURE_V1), alg=ALG_COSIGNATURE_V1)
    assert vkey.alg == ALG_COSIGNATURE_V1
    assert vkey.key_hash != VerifierKey.parse(_vkey()).key_hash


def test_node_key_basics() -> None:
    key = NodeKey.from_seed(SEED)
    assert NodeKey.from_seed(SEED).public_key == key.public_key
    assert len(key.public_key) == 32
    sig = key.sign(b"hello")
    assert len(sig) == 64
    verify_ed25519(key.public_key, b"hello", sig)
    key.verifier("ngo.example").verify(b"hello", sig)
    with pytest.raises(VerificationError):
        key.verifier("ngo.example").verify(b"hellp", sig)
    assert NodeKey.generate().public_key != key.public_key
    with pytest.raises(MalformedError):
        NodeKey.from_seed(b"short")


def test_node_key_never_shows_its_secret() -> None:
    key = NodeKey.from_seed(SEED)
    for text in (repr(key), str(key), f"{key!r}"):
        assert SEED.hex() not in text
        assert key.public_key.hex() in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


@settings(max_examples=30)
@given(seed=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=200), data=st.data())
def test_sign_verify_and_bit_flips(seed: bytes, msg: bytes, data: st.DataObject) -> None:
    key = NodeKey.from_seed(seed)
    sig = key.sign(msg)
    verify_ed25519(key.public_key, msg, sig)
    bit = data.draw(st.integers(0, 64 * 8 - 1))
    flipped = bytearray(sig)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationError):
        verify_ed25519(key.public_key, msg, bytes(flipped))
    if msg:
        bit = data.draw(st.integers(0, len(msg) * 8 - 1))
        other = bytearray(msg)
        other[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(VerificationError):
            verify_ed25519(key.public_key, bytes(other), sig)


# --- key file ------------------------------------------------------------------------------


def test_load_or_create_creates_0600_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    key = NodeKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert NodeKey.load_or_create(path).public_key == key.public_key
    assert NodeKey.load(path).public_key == key.public_key
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]  # no temp file left
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")


def test_key_file_is_standard_pkcs8(tmp_path: Path) -> None:
    # Interop both ways with standard tooling (here `cryptography`, like openssl genpkey).
    path = tmp_path / "node.key"
    key = NodeKey.load_or_create(path)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    raw_pub = loaded.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert raw_pub == key.public_key

    other = Ed25519PrivateKey.generate()
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path2 = tmp_path / "openssl.key"
    path2.write_bytes(pem)
    path2.chmod(0o600)
    assert NodeKey.load(path2).public_key == other.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    NodeKey.load_or_create(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as exc:
        NodeKey.load_or_create(path)
    assert isinstance(exc.value, ConfigError) and isinstance(exc.value, CryptoError)
    assert f"{mode:04o}" in str(exc.value) and "chmod 600" in str(exc.value)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage",
        b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_refuses_malformed_key_file_without_echoing_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as exc:
        NodeKey.load_or_create(path)
    assert "garbage" not in str(exc.value)
    assert path.read_bytes() == content  # never overwritten


def test_refuses_directory(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        NodeKey.load_or_create(path)


def test_concurrent_creation_yields_one_key(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    results: list[bytes] = []

    def create() -> None:
        results.append(NodeKey.load_or_create(path).public_key)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert NodeKey.load(path).public_key == results[0]
    assert os.listdir(tmp_path) == ["node.key"]


def test_load_missing_file_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        NodeKey.load(tmp_path / "absent.key")
