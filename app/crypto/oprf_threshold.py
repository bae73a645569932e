"""Threshold VOPRF: the RFC 9497 key Shamir-shared among key holders, combined in the exponent.

Pure, like `app.crypto.oprf`. The construction:

- key ceremony (`deal`): a random key `k` and a random polynomial `f` of degree `t - 1` with
  `f(0) = k`; holder `i` (1..n) gets the share `f(i)` and publishes `P_i = f(i) * G`. The epoch's
  public key is `k * G`. `Epoch.check` recomputes the public key from every `t`-subset of the
  public shares, so a dealer that handed out inconsistent shares is caught by anyone.
- evaluation: each holder is an RFC 9497 VOPRF server whose key is its share: for blinded
  elements `B_j` it returns `Z_ij = f(i) * B_j` with one batched DLEQ proof against `P_i`.
- the client verifies each holder's proof (`verify_partial`: a failure names the holder), and
  combines `t` verified partials with Lagrange coefficients at 0: `sum_i l_i * Z_ij = k * B_j`,
  exactly what a single VOPRF server holding `k` would return. It then unblinds and hashes as
  RFC 9497 Finalize, so the output is the RFC 9497 VOPRF output under `k`.

No single holder learns the input (it is blinded) or the key (it holds one share); fewer than
`t` holders together learn nothing about `k`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.crypto import oprf
from app.crypto._encoding import b64decode, b64encode
from app.crypto.errors import MalformedError
from app.errors import ProofError

__all__ = [
    "EPOCH_RE",
    "Epoch",
    "Finalized",
    "Holder",
    "HolderProofError",
    "Partial",
    "combine",
    "deal",
    "evaluate_share",
    "finalize",
    "lagrange_at_zero",
    "verify_partial",
]

EPOCH_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # an epoch id is an identifier `key_id`
MAX_SUBSET_CHECKS = 10_000


class HolderProofError(ProofError):
    """A holder's partial evaluation did not verify against its public share."""

    def __init__(self, holder: str, reason: str) -> None:
        super().__init__(f"key holder {holder}: {reason}")
        self.holder = holder
        self.reason = reason


@dataclass(frozen=True)
class Holder:
    origin: str
    index: int
    public_share: oprf.Element


@dataclass(frozen=True)
class Epoch:
    """The public description of one key epoch: what members pin and holders publish."""

    epoch: str
    threshold: int
    holders: tuple[Holder, ...]
    public_key: oprf.Element

    def holder(self, origin: str) -> Holder:
        for h in self.holders:
            if h.origin == origin:
                return h
        raise MalformedError("holder", f"{origin} holds no share of epoch {self.epoch}")

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "suite": oprf.SUITE,
            "mode": "voprf",
            "threshold": self.threshold,
            "public_key": b64encode(self.public_key),
            "holders": [
                {"origin": h.origin, "index": h.index, "public_share": b64encode(h.public_share)}
                for h in self.holders
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Epoch:
        """Parse and check (`check`) a published epoch; MalformedError names the bad field."""
        if not isinstance(data, dict):
            raise MalformedError("epoch", "an epoch description is a JSON object")
        epoch = data.get("epoch")
        if not isinstance(epoch, str) or not EPOCH_RE.fullmatch(epoch):
            raise MalformedError("epoch", "must match [a-z0-9][a-z0-9._-]{0,63}")
        if data.get("suite", oprf.SUITE) != oprf.SUITE:
            raise MalformedError("suite", f"only {oprf.SUITE} is supported")
        t = data.get("threshold")
        raw_holders = data.get("holders")
        if not isinstance(raw_holders, list) or not raw_holders:
            raise MalformedError("holders", "a non-empty list")
        if not isinstance(t, int) or isinstance(t, bool) or not 1 <= t <= len(raw_holders):
            raise MalformedError("threshold", "an integer from 1 to the number of holders")
        holders = []
        for n, h in enumerate(raw_holders):
            field = f"holders[{n}]"
            if not isinstance(h, dict):
                raise MalformedError(field, "an object with origin, index and public_share")
            origin, index = h.get("origin"), h.get("index")
            if not isinstance(origin, str) or not origin:
                raise MalformedError(f"{field}.origin", "a node origin")
            if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index < 2**16:
                raise MalformedError(f"{field}.index", "an integer from 1 to 65535")
            share = oprf.deserialize_element(
                _b64(h.get("public_share"), f"{field}.public_share"), f"{field}.public_share"
            )
            holders.append(Holder(origin, index, share))
        if len({h.index for h in holders}) != len(holders):
            raise MalformedError("holders", "share indexes must be distinct")
        if len({h.origin for h in holders}) != len(holders):
            raise MalformedError("holders", "holder origins must be distinct")
        pk = oprf.deserialize_element(_b64(data.get("public_key"), "public_key"), "public_key")
        out = cls(epoch, t, tuple(holders), pk)
        out.check()
        return out

    def check(self) -> None:
        """Every t-subset of public shares interpolates to the public key (else MalformedError).

        This is what lets anyone, not only the holders, see that the shares are of one key.
        """
        subsets = itertools.combinations(self.holders, self.threshold)
        for subset in itertools.islice(subsets, MAX_SUBSET_CHECKS):
            lam = lagrange_at_zero([h.index for h in subset])
            acc = bytes(32)
            for h in subset:
                acc = oprf.element_add(acc, oprf.scalar_mult(lam[h.index], h.public_share))
            if acc != self.public_key:
                names = ", ".join(h.origin for h in subset)
                raise MalformedError(
                    "public_key", f"the public shares of {names} do not combine to it"
                )


def _b64(v: Any, field: str) -> bytes:
    if not isinstance(v, str):
        raise MalformedError(field, "base64 text")
    return b64decode(v, field)


@dataclass(frozen=True)
class Partial:
    """One holder's answer for a batch: `evaluated[j] = share * blinded[j]`, one proof."""

    holder: str
    evaluated: tuple[oprf.Element, ...]
    proof: bytes


def deal(
    epoch: str,
    holders: Sequence[str],
    threshold: int,
    *,
    random_scalar: Callable[[], int] = oprf.random_scalar,
) -> tuple[Epoch, dict[str, int]]:
    """Trusted-dealer key ceremony: (public epoch, {holder origin: secret share}).

    The dealer sees the whole key for the length of this call and must keep nothing; a DKG
    would remove that moment (see docs/identifiers.md).
    """
    if not EPOCH_RE.fullmatch(epoch):
        raise MalformedError("epoch", "must match [a-z0-9][a-z0-9._-]{0,63}")
    if len(set(holders)) != len(holders) or not holders:
        raise MalformedError("holders", "distinct holder origins, at least one")
    if not 1 <= threshold <= len(holders):
        raise MalformedError("threshold", "from 1 to the number of holders")
    coefficients = [random_scalar() for _ in range(threshold)]  # f(0) = coefficients[0] = k

    def f(x: int) -> int:
        acc = 0
        for c in reversed(coefficients):
            acc = (acc * x + c) % oprf.ORDER
        return acc

    shares = {origin: f(i) for i, origin in enumerate(holders, start=1)}
    public = Epoch(
        epoch,
        threshold,
        tuple(Holder(o, i, oprf.public_key(shares[o])) for i, o in enumerate(holders, start=1)),
        oprf.public_key(coefficients[0]),
    )
    public.check()
    return public, shares


def lagrange_at_zero(indices: Sequence[int]) -> dict[int, int]:
    """Lagrange coefficients l_i with sum l_i * f(i) = f(0), modulo the group order."""
    if len(set(indices)) != len(indices):
        raise ValueError("indices must be distinct")
    out = {}
    for i in indices:
        num, den = 1, 1
        for j in indices:
            if j != i:
                num = num * j % oprf.ORDER
                den = den * (j - i) % oprf.ORDER
        out[i] = num * pow(den, -1, oprf.ORDER) % oprf.ORDER
    return out


def evaluate_share(
    share: int, blinded: Sequence[bytes], r: int | None = None
) -> tuple[list[oprf.Element], bytes]:
    """Holder side: RFC 9497 VOPRF BlindEvaluate with the share as the key."""
    evaluated, proof = oprf.blind_evaluate(share, blinded, oprf.MODE_VOPRF, r=r)
    assert proof is not None  # VOPRF mode always proves
    return evaluated, proof


_GENERATOR = oprf.scalar_mult_base(1)


def verify_partial(epoch: Epoch, blinded: Sequence[bytes], partial: Partial) -> None:
    """Check one holder's batch proof against its public share; HolderProofError names it."""
    try:
        holder = epoch.holder(partial.holder)
    except MalformedError:
        raise HolderProofError(partial.holder, f"not a key holder of epoch {epoch.epoch}") from None
    if len(partial.evaluated) != len(blinded):
        raise HolderProofError(
            partial.holder,
            f"answered {len(partial.evaluated)} evaluations for {len(blinded)} elements",
        )
    try:
        oprf.verify_proof(
            _GENERATOR,
            holder.public_share,
            blinded,
            partial.evaluated,
            partial.proof,
            oprf.MODE_VOPRF,
        )
    except (ProofError, MalformedError) as exc:
        raise HolderProofError(partial.holder, f"bad partial evaluation ({exc})") from None


def combine(epoch: Epoch, partials: Sequence[Partial]) -> list[bytes]:
    """k * B_j for each j, from exactly `threshold` partials of distinct holders.

    The partials must already be verified (`verify_partial`).
    """
    if len(partials) != epoch.threshold:
        raise ValueError(f"combine needs exactly {epoch.threshold} partials")
    holders = [epoch.holder(p.holder) for p in partials]
    lam = lagrange_at_zero([h.index for h in holders])
    count = len(partials[0].evaluated)
    out = []
    for j in range(count):
        acc = bytes(32)
        for h, p in zip(holders, partials, strict=True):
            acc = oprf.element_add(acc, oprf.scalar_mult(lam[h.index], p.evaluated[j]))
        out.append(acc)
    return out


@dataclass(frozen=True)
class Finalized:
    outputs: list[bytes]
    used: list[str]
    refused: Mapping[str, str]


def finalize(
    epoch: Epoch,
    inputs: Sequence[bytes],
    blinds: Sequence[int],
    blinded: Sequence[bytes],
    partials: Sequence[Partial],
) -> Finalized:
    """Client side: verify every partial, combine `threshold` good ones, unblind and hash.

    Bad partials are refused and named in `refused` ({holder: reason}); fewer than `threshold`
    good ones raise the HolderProofError of the first bad holder (or ProofError if none).
    """
    good: list[Partial] = []
    refused: dict[str, str] = {}
    seen: set[str] = set()
    for p in partials:
        if p.holder in seen:
            continue
        seen.add(p.holder)
        try:
            verify_partial(epoch, blinded, p)
        except HolderProofError as exc:
            refused[exc.holder] = exc.reason
            continue
        good.append(p)
    if len(good) < epoch.threshold:
        if refused:
            holder, reason = next(iter(refused.items()))
            raise HolderProofError(holder, reason)
        raise ProofError(
            f"{len(good)} verified partial evaluations; epoch {epoch.epoch} needs {epoch.threshold}"
        )
    chosen = good[: epoch.threshold]
    combined = combine(epoch, chosen)
    outputs = [
        oprf.finalize_hash(x, oprf.unblind(r, z))
        for x, r, z in zip(inputs, blinds, combined, strict=True)
    ]
    return Finalized(outputs, [p.holder for p in chosen], refused)
