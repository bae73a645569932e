"""Public ids: ULID layout (48-bit millisecond time, 80 random bits) in Crockford base32."""

from __future__ import annotations

import re
import time
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from app import ids

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def digits(n: int) -> str:
    """The reference encoding: 26 base32 digits, most significant first."""
    return "".join(CROCKFORD[(n >> (5 * k)) & 31] for k in reversed(range(26)))


def decode(s: str) -> int:
    n = 0
    for c in s:
        n = n * 32 + CROCKFORD.index(c)
    return n


@given(st.integers(min_value=0, max_value=(1 << 48) - 1), st.integers(0, (1 << 80) - 1))
def test_every_time_and_random_part_encodes_digit_for_digit(ms: int, rand: int) -> None:
    with (
        mock.patch.object(ids.time, "time", return_value=ms / 1000 + 0.0001),
        mock.patch.object(ids.secrets, "randbits", return_value=rand),
    ):
        got = ids.new_id()
    assert got == digits((ms << 80) | rand)


def test_ids_are_26_digits_time_ordered_and_carry_the_time() -> None:
    before = int(time.time() * 1000)
    made = [ids.new_id() for _ in range(200)]
    after = int(time.time() * 1000)
    assert all(re.fullmatch(r"[0-9a-hjkmnp-tv-z]{26}", i) for i in made)
    assert len(set(made)) == len(made)
    for i in made:
        assert before <= decode(i) >> 80 <= after
    # Ids from later milliseconds sort later, as strings.
    first = made[0]
    time.sleep(0.002)
    assert ids.new_id() > first
