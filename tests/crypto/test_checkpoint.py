from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto.checkpoint import (
    Checkpoint,
    cosign,
    cosignature_message,
    cosignature_verifier_key,
    open_checkpoint,
    open_cosigned_checkpoint,
    parse_checkpoint_body,
    parse_cosignature,
    parse_cosignature_verifier_key,
    sign_checkpoint,
    verify_cosignature,
)
from app.crypto.errors import MalformedError
from app.crypto.keys import ALG_COSIGNATURE_V1, NodeKey, key_hash, verify_ed25519
from app.crypto.merkle import MerkleTree, RootHash
from app.errors import VerificationError

LOG = NodeKey.from_seed(b"\x0a" * 32)
W1 = NodeKey.from_seed(b"\x0b" * 32)
W2 = NodeKey.from_seed(b"\x0c" * 32)
ORIGIN = "log.example"
LOG_VKEY = LOG.verifier(ORIGIN)
W1_VKEY = parse_cosignature_verifier_key(cosignature_verifier_key("w1.example", W1.public_key))
W2_VKEY = parse_cosignature_verifier_key(cosignature_verifier_key("w2.example", W2.public_key))
ROOT = RootHash(MerkleTree([b"a", b"b", b"c"]).root())
CP = Checkpoint(ORIGIN, 3, ROOT)


def test_body_format_and_round_trip() -> None:
    assert CP.body() == f"{ORIGIN}\n3\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint_body(CP.body()) == CP
    ext = Checkpoint(ORIGIN, 3, ROOT, ("ext one", "— ext"))
    assert ext.body().endswith("\next one\n— ext\n")
    assert parse_checkpoint_body(ext.body()) == ext


@pytest.mark.parametrize(
    "body",
    [
        "",
        "log.example\n3\n",
        "log.example\n3\nAAAA\n",  # root is not 32 bytes
        f"log.example\n03\n{base64.b64encode(ROOT).decode()}\n",
        f"log.example\n-3\n{base64.b64encode(ROOT).decode()}\n",
        f"log.example\n{2**64}\n{base64.b64encode(ROOT).decode()}\n",
        f"\n3\n{base64.b64encode(ROOT).decode()}\n",
        f"log.example\n3\n{base64.b64encode(ROOT).decode()}",
        f"log.example\n3\n{base64.b64encode(ROOT).decode()}\n\n",  # empty extension line
        f"log example\n3\n{base64.b64encode(ROOT).decode()}\n",
    ],
)
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(MalformedError):
        parse_checkpoint_body(body)


def test_sign_and_open() -> None:
    note = sign_checkpoint(CP, LOG)
    assert note.startswith(CP.body() + "\n\u2014 log.example ")
    assert open_checkpoint(note, LOG_VKEY) == CP
    with pytest.raises(VerificationError):
        open_checkpoint(note, W1.verifier(ORIGIN))
    # A key pinned for another origin cannot vouch for this log even if it signed.
    other = Checkpoint("other.example", 3, ROOT)
    with pytest.raises(VerificationError, match=r"other\.example"):
        open_checkpoint(sign_note_as(other, LOG, ORIGIN), LOG_VKEY)


def sign_note_as(cp: Checkpoint, key: NodeKey, name: str) -> str:
    from app.crypto.note import sign_note

    return sign_note(cp.body(), key, name)


def test_cosignature_bytes_follow_the_spec() -> None:
    line = cosign(CP, W1, "w1.example", 1679315147)
    assert line.startswith("\u2014 w1.example ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == key_hash("w1.example", ALG_COSIGNATURE_V1, W1.public_key)
    assert raw[:4] == W1_VKEY.key_hash
    assert struct.unpack(">Q", raw[4:12]) == (1679315147,)
    msg = b"cosignature/v1\ntime 1679315147\n" + CP.body().encode()
    assert cosignature_message(CP, 1679315147) == msg
    verify_ed25519(W1.public_key, msg, raw[12:])
    verify_cosignature(CP, line, W1_VKEY)
    cosig = parse_cosignature(line)
    assert (cosig.name, cosig.timestamp) == ("w1.example", 1679315147)
    assert cosig.line() == line


def test_cosigner_vkey_format() -> None:
    vkey = cosignature_verifier_key("w1.example", W1.public_key)
    _, hash_hex, b64 = vkey.split("+", 2)
    assert base64.b64decode(b64) == b"\x04" + W1.public_key
    assert hash_hex == key_hash("w1.example", 0x04, W1.public_key).hex()
    assert str(W1_VKEY) == vkey


def test_cosignature_rejections() -> None:
    line = cosign(CP, W1, "w1.example", 100)
    with pytest.raises(VerificationError):
        verify_cosignature(CP, line, W2_VKEY)  # another witness
    with pytest.raises(VerificationError):
        verify_cosignature(Checkpoint(ORIGIN, 4, ROOT), line, W1_VKEY)  # another checkpoint
    with pytest.raises(VerificationError):
        verify_cosignature(CP, line, W1.verifier("w1.example"))  # a 0x01 key is not a cosigner
    cosig = parse_cosignature(line)
    tampered = type(cosig)(cosig.name, cosig.key_hash, 101, cosig.signature)
    with pytest.raises(VerificationError):
        verify_cosignature(CP, tampered, W1_VKEY)  # the timestamp is signed
    with pytest.raises(MalformedError):
        parse_cosignature(sign_checkpoint(CP, LOG).split("\n\n")[1])  # 64 bytes, not 72
    with pytest.raises(MalformedError):
        cosign(CP, W1, "w1.example", 2**63)


@settings(max_examples=30)
@given(ts=st.integers(0, 2**63 - 1), bit=st.integers(0, (4 + 8 + 64) * 8 - 1))
def test_cosignature_bit_flips(ts: int, bit: int) -> None:
    line = cosign(CP, W1, "w1.example", ts)
    verify_cosignature(CP, line, W1_VKEY)
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[bit // 8] ^= 1 << (bit % 8)
    bad = f"\u2014 w1.example {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises((VerificationError, MalformedError)):
        verify_cosignature(CP, bad, W1_VKEY)


def test_open_cosigned_checkpoint() -> None:
    stranger = NodeKey.generate()
    note = (
        sign_checkpoint(CP, LOG)
        + cosign(CP, W1, "w1.example", 10)
        + cosign(CP, stranger, "s.example", 11)
        + cosign(CP, W2, "w2.example", 12)
    )
    assert open_checkpoint(note, LOG_VKEY) == CP  # cosignatures are unknown to open_note
    cp, cosigs = open_cosigned_checkpoint(note, LOG_VKEY, [W1_VKEY, W2_VKEY])
    assert cp == CP
    assert [(c.name, c.timestamp) for c in cosigs] == [("w1.example", 10), ("w2.example", 12)]
    _, only_w2 = open_cosigned_checkpoint(note, LOG_VKEY, [W2_VKEY])
    assert [c.name for c in only_w2] == ["w2.example"]
    other_cp = Checkpoint(ORIGIN, 4, ROOT)
    bad = sign_checkpoint(CP, LOG) + cosign(other_cp, W1, "w1.example", 10)
    with pytest.raises(VerificationError):
        open_cosigned_checkpoint(bad, LOG_VKEY, [W1_VKEY])
