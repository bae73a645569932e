"""Threshold VOPRF: 2-of-3 (and other) sharings give the RFC 9497 output of the whole key."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto import oprf
from app.crypto import oprf_threshold as th
from app.crypto.errors import MalformedError
from app.errors import ProofError

HOLDERS = ["h1.example", "h2.example", "h3.example"]


def _key_from(epoch: th.Epoch, shares: dict[str, int], origins: list[str]) -> int:
    lam = th.lagrange_at_zero([epoch.holder(o).index for o in origins])
    return sum(lam[epoch.holder(o).index] * shares[o] for o in origins) % oprf.ORDER


def _partials(shares: dict[str, int], origins: list[str], blinded: list[bytes]) -> list[th.Partial]:
    out = []
    for o in origins:
        ev, proof = th.evaluate_share(shares[o], blinded)
        out.append(th.Partial(o, tuple(ev), proof))
    return out


def test_two_of_three_matches_the_single_key_voprf_output_for_every_pair() -> None:
    epoch, shares = th.deal("e1", HOLDERS, 2)
    inputs = [b"email:jane@example.org", b"phone:+447700900123"]
    pairs = [oprf.blind(x) for x in inputs]
    blinds, blinded = [p[0] for p in pairs], [p[1] for p in pairs]
    outs = set()
    for pair in itertools.combinations(HOLDERS, 2):
        res = th.finalize(epoch, inputs, blinds, blinded, _partials(shares, list(pair), blinded))
        assert res.used == list(pair) and not res.refused
        outs.add(tuple(res.outputs))
    assert len(outs) == 1  # every pair of holders gives the same outputs
    k = _key_from(epoch, shares, HOLDERS[:2])
    assert oprf.public_key(k) == epoch.public_key
    assert list(outs.pop()) == [oprf.evaluate(k, x) for x in inputs]


def test_one_holder_alone_cannot_evaluate() -> None:
    epoch, shares = th.deal("e1", HOLDERS, 2)
    blind, blinded = oprf.blind(b"email:jane@example.org")
    with pytest.raises(ProofError):
        th.finalize(epoch, [b"x"], [blind], [blinded], _partials(shares, HOLDERS[:1], [blinded]))
    # Nor is its share the key.
    k = _key_from(epoch, shares, HOLDERS[:2])
    assert all(oprf.public_key(s) != oprf.public_key(k) for s in shares.values())


def test_wrong_partial_is_refused_and_named_and_the_others_still_serve() -> None:
    epoch, shares = th.deal("e1", HOLDERS, 2)
    inputs = [b"email:a@example.org", b"email:b@example.org"]
    pairs = [oprf.blind(x) for x in inputs]
    blinds, blinded = [p[0] for p in pairs], [p[1] for p in pairs]
    good = _partials(shares, HOLDERS, blinded)
    # h2 answers with another scalar than its share, and a proof for that other scalar.
    ev, proof = th.evaluate_share((shares["h2.example"] + 1) % oprf.ORDER, blinded)
    bad = th.Partial("h2.example", tuple(ev), proof)
    res = th.finalize(epoch, inputs, blinds, blinded, [good[0], bad, good[2]])
    assert res.refused.keys() == {"h2.example"}
    assert res.used == ["h1.example", "h3.example"]
    k = _key_from(epoch, shares, HOLDERS[:2])
    assert res.outputs == [oprf.evaluate(k, x) for x in inputs]
    # With only one good holder left, the bad one is named in the error.
    with pytest.raises(th.HolderProofError) as info:
        th.finalize(epoch, inputs, blinds, blinded, [good[0], bad])
    assert info.value.holder == "h2.example"


def test_swapped_or_truncated_evaluations_are_refused() -> None:
    epoch, shares = th.deal("e1", HOLDERS, 2)
    blinded = [oprf.blind(x)[1] for x in (b"a", b"b")]
    p = _partials(shares, ["h1.example"], blinded)[0]
    for forged in (
        th.Partial(p.holder, p.evaluated[::-1], p.proof),
        th.Partial(p.holder, p.evaluated[:1], p.proof),
        th.Partial("h3.example", p.evaluated, p.proof),  # h1's answer claimed by h3
        th.Partial("stranger.example", p.evaluated, p.proof),
    ):
        with pytest.raises(th.HolderProofError):
            th.verify_partial(epoch, blinded, forged)
    th.verify_partial(epoch, blinded, p)


def test_epoch_round_trips_and_inconsistent_shares_are_caught() -> None:
    epoch, _ = th.deal("fed-2026", HOLDERS, 2)
    assert th.Epoch.from_json(epoch.to_json()) == epoch
    doc = epoch.to_json()
    other, _ = th.deal("fed-2026", HOLDERS, 2)
    doc["holders"][1]["public_share"] = other.to_json()["holders"][1]["public_share"]
    with pytest.raises(MalformedError) as info:
        th.Epoch.from_json(doc)
    assert info.value.field == "public_key"
    for field, value in (("threshold", 4), ("threshold", 0), ("epoch", "Bad Epoch")):
        bad = epoch.to_json()
        bad[field] = value
        with pytest.raises(MalformedError):
            th.Epoch.from_json(bad)
    dup = epoch.to_json()
    dup["holders"][2]["index"] = 1
    with pytest.raises(MalformedError):
        th.Epoch.from_json(dup)


@settings(max_examples=15, deadline=None)
@given(t=st.integers(1, 4), extra=st.integers(0, 2), data=st.data())
def test_any_t_subset_reconstructs_the_key(t: int, extra: int, data: st.DataObject) -> None:
    origins = [f"h{i}.example" for i in range(t + extra)]
    epoch, shares = th.deal("e", origins, t)
    subset = data.draw(st.permutations(origins)).__getitem__(slice(0, t))
    assert oprf.public_key(_key_from(epoch, shares, list(subset))) == epoch.public_key
