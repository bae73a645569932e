"""The fast path of `canonical_json` gives exactly the reference RFC 8785 bytes."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto.canonical import canonical_json

_ints = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_keys = st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=8), _text)
_json = st.recursive(
    st.none() | st.booleans() | _ints | _text | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(_json)
def test_same_bytes_as_the_reference(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


def test_control_characters_and_unicode() -> None:
    value = {"k": "".join(chr(i) for i in range(0, 0x80)) + "é\u2028\U0001f600", "z": [True, None]}
    assert canonical_json(value) == rfc8785.dumps(value)
