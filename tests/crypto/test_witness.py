from __future__ import annotations

import pytest

from app.crypto.checkpoint import (
    Checkpoint,
    cosignature_verifier_key,
    open_cosigned_checkpoint,
    parse_cosignature_verifier_key,
    sign_checkpoint,
)
from app.crypto.errors import (
    EquivocationError,
    MalformedError,
    UnknownLogError,
    WitnessConflict,
)
from app.crypto.keys import NodeKey
from app.crypto.merkle import MerkleTree, RootHash
from app.crypto.witness import (
    AddCheckpointRequest,
    AddCheckpointResult,
    WitnessState,
    add_checkpoint,
    format_add_checkpoint_body,
    parse_add_checkpoint_body,
)
from app.errors import ProofError, VerificationError

LOG = NodeKey.from_seed(b"\x21" * 32)
WITNESS = NodeKey.from_seed(b"\x22" * 32)
ORIGIN = "log.example"
LOG_KEYS = [LOG.verifier(ORIGIN)]
W_VKEY = parse_cosignature_verifier_key(cosignature_verifier_key("w.example", WITNESS.public_key))
TREE = MerkleTree([i.to_bytes(2, "big") for i in range(20)])


def note_at(size: int, key: NodeKey = LOG, root: bytes | None = None) -> str:
    root = TREE.root(size) if root is None else root
    return sign_checkpoint(Checkpoint(ORIGIN, size, RootHash(root)), key)


def request(old: int, size: int, key: NodeKey = LOG) -> AddCheckpointRequest:
    proof = TREE.consistency_proof(old, size) if 0 < old < size else []
    body = format_add_checkpoint_body(old, proof, note_at(size, key))
    return parse_add_checkpoint_body(body)


def submit(
    req: AddCheckpointRequest, state: WitnessState | None, ts: int = 1000
) -> AddCheckpointResult:
    return add_checkpoint(req, state, LOG_KEYS, WITNESS, "w.example", ts)


def test_first_then_growing_checkpoints_are_cosigned() -> None:
    res = submit(request(0, 5), None)
    assert (res.state.size, res.state.root_hash) == (5, TREE.root(5))
    cp, cosigs = open_cosigned_checkpoint(
        res.state.checkpoint_note + res.cosignature, LOG_KEYS[0], [W_VKEY]
    )
    assert cp.size == 5 and cosigs[0].timestamp == 1000
    res2 = submit(request(5, 12), res.state, ts=1001)
    assert res2.state.size == 12
    res3 = submit(request(12, 12), res2.state, ts=1002)  # same checkpoint again: fine
    assert res3.state == res2.state


def test_old_size_mismatch_is_a_conflict_with_the_known_size() -> None:
    state = submit(request(0, 8), None).state
    for old, size in ((5, 10), (0, 10), (9, 10)):
        with pytest.raises(WitnessConflict) as exc:
            submit(request(old, size), state)
        assert exc.value.known_size == 8
    with pytest.raises(WitnessConflict) as exc:
        submit(request(3, 4), None)
    assert exc.value.known_size == 0


def test_smaller_checkpoint_is_refused() -> None:
    state = submit(request(0, 8), None).state
    with pytest.raises(WitnessConflict):
        submit(request(5, 5), state)  # rolling back to 5: old size is not 8


def test_old_larger_than_size_is_malformed() -> None:
    state = submit(request(0, 8), None).state
    req = parse_add_checkpoint_body(format_add_checkpoint_body(8, [], note_at(6)))
    with pytest.raises(MalformedError):
        submit(req, state)


def test_equivocation_carries_both_notes() -> None:
    state = submit(request(0, 8), None).state
    forked = note_at(8, root=TREE.root(7))
    req = parse_add_checkpoint_body(format_add_checkpoint_body(8, [], forked))
    with pytest.raises(EquivocationError) as exc:
        submit(req, state)
    assert exc.value.evidence == (state.checkpoint_note, forked)
    assert exc.value.known_size == 8 and exc.value.origin == ORIGIN
    assert TREE.root(8).hex() in str(exc.value) and TREE.root(7).hex() in str(exc.value)


def test_bad_consistency_proof() -> None:
    state = submit(request(0, 8), None).state
    proof = TREE.consistency_proof(8, 12)
    bad = [bytes(32), *proof[1:]]
    req = parse_add_checkpoint_body(format_add_checkpoint_body(8, bad, note_at(12)))
    with pytest.raises(ProofError):
        submit(req, state)
    with pytest.raises(ProofError):  # old 0 needs an empty proof
        submit(parse_add_checkpoint_body(format_add_checkpoint_body(0, proof, note_at(12))), None)
    # A fork at a larger size fails the proof from the cosigned state.
    forked = note_at(12, root=TREE.root(11))
    with pytest.raises(ProofError):
        submit(parse_add_checkpoint_body(format_add_checkpoint_body(8, proof, forked)), state)


def test_signature_checks() -> None:
    with pytest.raises(VerificationError):
        submit(request(0, 5, key=NodeKey.generate()), None)
    with pytest.raises(UnknownLogError):
        add_checkpoint(request(0, 5), None, [], WITNESS, "w.example", 1)


def test_body_round_trip_and_spec_example() -> None:
    example = (
        "old 20852014\n"
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
        "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
        "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
        "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
        "\n"
        "example.com/behind-the-sofa\n"
        "20852163\n"
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        "\n"
        "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4"
        "URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    )
    req = parse_add_checkpoint_body(example)
    assert req.old_size == 20852014 and len(req.proof) == 4
    assert req.origin == "example.com/behind-the-sofa"
    assert format_add_checkpoint_body(req.old_size, req.proof, req.checkpoint_note) == example
    empty = format_add_checkpoint_body(0, [], note_at(3))
    assert empty.startswith("old 0\n\n")
    assert parse_add_checkpoint_body(empty).proof == ()


@pytest.mark.parametrize(
    "body",
    [
        "",
        "old 1\n",
        "old 01\n\nx\n",
        "old -1\n\nx\n",
        "new 1\n\nx\n",
        "old 1\nAAAA\n\nx\n",  # not a 32-byte hash
        "old 1\n\n",  # no checkpoint
        "old 1\n" + "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n" * 64 + "\nx\n",
    ],
)
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(MalformedError):
        parse_add_checkpoint_body(body)
