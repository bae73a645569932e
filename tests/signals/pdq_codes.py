"""Synthetic PDQ codes for the index tests, and the brute-force answer they are checked against."""

from __future__ import annotations

import random

import numpy as np


def ref_query(entries: dict[int, bytes], code: bytes, t: int) -> list[tuple[int, int]]:
    """Brute force with Python ints: independent of the numpy kernels under test."""
    q = int.from_bytes(code, "big")
    hits = [(k, (int.from_bytes(c, "big") ^ q).bit_count()) for k, c in entries.items()]
    return sorted(((k, d) for k, d in hits if d <= t), key=lambda kd: (kd[1], kd[0]))


def flip(code: bytes, count: int, rng: random.Random) -> bytes:
    """`code` with `count` distinct bits flipped: a neighbour at exactly that distance."""
    value = int.from_bytes(code, "big")
    for bit in rng.sample(range(256), count):
        value ^= 1 << bit
    return value.to_bytes(32, "big")


def rand_code(rng: random.Random) -> bytes:
    return rng.getrandbits(256).to_bytes(32, "big")


def as_array(codes: list[bytes]) -> np.ndarray:
    """(n, 32) uint8, as the index takes codes."""
    return np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(-1, 32).copy()
