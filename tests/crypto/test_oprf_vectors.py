"""RFC 9497 ristretto255-SHA512: every published test vector, plus the refusals it requires."""

from __future__ import annotations

from typing import Any

import pytest

from app.crypto import oprf
from app.crypto.errors import MalformedError
from app.errors import ProofError
from tests.crypto._vectors import load

DATA = load("oprf/rfc9497_ristretto255_sha512.json")
MODES = {"OPRF": oprf.MODE_OPRF, "VOPRF": oprf.MODE_VOPRF, "POPRF": oprf.MODE_POPRF}


def _h(s: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in s.split(",")]


def _cases(mode: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    suite = DATA["modes"][mode]
    return [(f"{mode} {v['name']}", suite, v) for v in suite["vectors"]]


ALL = _cases("OPRF") + _cases("VOPRF") + _cases("POPRF")


def test_every_vector_is_here() -> None:
    # RFC 9497 A.1: 2 OPRF, 3 VOPRF, 3 POPRF vectors for ristretto255-SHA512.
    assert [len(DATA["modes"][m]["vectors"]) for m in ("OPRF", "VOPRF", "POPRF")] == [2, 3, 3]


@pytest.mark.parametrize("mode", list(MODES))
def test_derive_key_pair(mode: str) -> None:
    suite = DATA["modes"][mode]
    sk, pk = oprf.derive_key_pair(
        bytes.fromhex(suite["Seed"]), bytes.fromhex(suite["KeyInfo"]), MODES[mode]
    )
    assert oprf.scalar_bytes(sk).hex() == suite["skSm"]
    if "pkSm" in suite:
        assert pk.hex() == suite["pkSm"]


@pytest.mark.parametrize(("name", "suite", "vec"), ALL, ids=[c[0] for c in ALL])
def test_protocol_vector(name: str, suite: dict[str, Any], vec: dict[str, Any]) -> None:
    mode = MODES[name.split()[0]]
    sk = oprf.deserialize_scalar(bytes.fromhex(suite["skSm"]))
    inputs = _h(vec["Input"])
    blinds = [oprf.deserialize_scalar(b) for b in _h(vec["Blind"])]
    r = oprf.deserialize_scalar(bytes.fromhex(vec["ProofRandomScalar"])) if "Proof" in vec else None
    info = bytes.fromhex(vec["Info"]) if "Info" in vec else b""
    want_out = [x.hex() for x in _h(vec["Output"])]

    if mode == oprf.MODE_POPRF:
        pk = bytes.fromhex(suite["pkSm"])
        blinded, tweaked = [], b""
        for x, b in zip(inputs, blinds, strict=True):
            _, be, tweaked = oprf.poprf_blind(x, info, pk, blind=b)
            blinded.append(be)
        evaluated, proof = oprf.poprf_blind_evaluate(sk, blinded, info, r=r)
        outs = oprf.poprf_finalize(inputs, blinds, evaluated, blinded, proof, info, tweaked)
        assert [oprf.poprf_evaluate(sk, x, info).hex() for x in inputs] == want_out
    else:
        blinded = [oprf.blind(x, mode, blind=b)[1] for x, b in zip(inputs, blinds, strict=True)]
        evaluated, proof = oprf.blind_evaluate(sk, blinded, mode, r=r)
        pk = oprf.public_key(sk)
        outs = oprf.finalize(
            inputs, blinds, evaluated, mode=mode, blinded=blinded, proof=proof, pk=pk
        )
        assert [oprf.evaluate(sk, x, mode).hex() for x in inputs] == want_out

    assert ",".join(b.hex() for b in blinded) == vec["BlindedElement"]
    assert ",".join(e.hex() for e in evaluated) == vec["EvaluationElement"]
    if "Proof" in vec:
        assert proof is not None and proof.hex() == vec["Proof"]
    else:
        assert proof is None
    assert [o.hex() for o in outs] == want_out


VOPRF_BATCH = DATA["modes"]["VOPRF"]["vectors"][2]


def _voprf_batch() -> tuple[bytes, list[bytes], list[bytes], bytes]:
    pk = bytes.fromhex(DATA["modes"]["VOPRF"]["pkSm"])
    return (
        pk,
        _h(VOPRF_BATCH["BlindedElement"]),
        _h(VOPRF_BATCH["EvaluationElement"]),
        bytes.fromhex(VOPRF_BATCH["Proof"]),
    )


def test_vector_proof_verifies_and_tampering_is_refused() -> None:
    pk, blinded, evaluated, proof = _voprf_batch()
    g = oprf.scalar_mult_base(1)
    oprf.verify_proof(g, pk, blinded, evaluated, proof, oprf.MODE_VOPRF)
    # A swapped evaluation, a flipped proof byte, another key, a reordered batch: all refused.
    with pytest.raises(ProofError):
        oprf.verify_proof(g, pk, blinded, evaluated[::-1], proof, oprf.MODE_VOPRF)
    bad = bytearray(proof)
    bad[40] ^= 1
    with pytest.raises((ProofError, MalformedError)):
        oprf.verify_proof(g, pk, blinded, evaluated, bytes(bad), oprf.MODE_VOPRF)
    with pytest.raises(ProofError):
        oprf.verify_proof(g, oprf.scalar_mult_base(7), blinded, evaluated, proof, oprf.MODE_VOPRF)
    with pytest.raises(ProofError):
        oprf.verify_proof(g, pk, blinded, evaluated, proof, oprf.MODE_POPRF)


def test_finalize_refuses_a_wrong_evaluation() -> None:
    pk, blinded, evaluated, proof = _voprf_batch()
    blinds = [oprf.deserialize_scalar(b) for b in _h(VOPRF_BATCH["Blind"])]
    wrong = [evaluated[0], oprf.scalar_mult(2, evaluated[1])]
    with pytest.raises(ProofError):
        oprf.finalize(_h(VOPRF_BATCH["Input"]), blinds, wrong, blinded=blinded, proof=proof, pk=pk)


def test_deserialize_refuses_identity_noncanonical_and_short() -> None:
    with pytest.raises(MalformedError):
        oprf.deserialize_element(bytes(32))  # the identity
    with pytest.raises(MalformedError):
        oprf.deserialize_element(b"\xff" * 32)  # not canonical
    with pytest.raises(MalformedError):
        oprf.deserialize_element(b"\x01" * 31)
    with pytest.raises(MalformedError):
        oprf.deserialize_scalar(oprf.ORDER.to_bytes(32, "little"))
    g = oprf.scalar_mult_base(1)
    assert oprf.deserialize_element(g) == g


def test_random_round_trip_matches_server_evaluate() -> None:
    sk = oprf.random_scalar()
    pk = oprf.public_key(sk)
    inputs = [b"email:a@example.org", b"phone:+447700900123", b""]
    pairs = [oprf.blind(x) for x in inputs]
    evaluated, proof = oprf.blind_evaluate(sk, [p[1] for p in pairs])
    outs = oprf.finalize(
        inputs, [p[0] for p in pairs], evaluated, blinded=[p[1] for p in pairs], proof=proof, pk=pk
    )
    assert outs == [oprf.evaluate(sk, x) for x in inputs]
    # Blinding hides the input: the same input blinds to unrelated elements each time.
    assert oprf.blind(inputs[0])[1] != oprf.blind(inputs[0])[1]


def test_expand_message_xmd_sha512_rfc9380_vector() -> None:
    # RFC 9380 K.3 (expand_message_xmd, SHA-512), msg "" and "abc", len_in_bytes 0x20.
    dst = b"QUUX-V01-CS02-with-expander-SHA512-256"
    assert oprf.expand_message_xmd(b"", dst, 0x20).hex() == (
        "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
    )
    assert oprf.expand_message_xmd(b"abc", dst, 0x20).hex() == (
        "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"
    )
