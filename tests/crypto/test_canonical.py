from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.crypto.canonical import canonical_json
from app.crypto.errors import MalformedError

from ._vectors import VECTORS

JCS_CASES = sorted(p.name for p in (VECTORS / "jcs" / "input").glob("*.json"))


def test_all_jcs_vectors_present() -> None:
    assert len(JCS_CASES) == 6


@pytest.mark.parametrize("name", JCS_CASES)
def test_jcs_vector_exact_bytes(name: str) -> None:
    import json

    value = json.loads((VECTORS / "jcs" / "input" / name).read_bytes())
    expected = (VECTORS / "jcs" / "output" / name).read_bytes()
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [{"a": math.nan}, {"a": math.inf}, {1: "x"}, {"a": 2**53 + 1}, {"a": b"bytes"}, {"a": {1, 2}}],
)
def test_values_json_cannot_carry_exactly_are_refused(value: object) -> None:
    with pytest.raises(MalformedError):
        canonical_json(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_canonical_form_is_a_fixed_point(value: object) -> None:
    import json

    once = canonical_json(value)
    assert canonical_json(json.loads(once)) == once
