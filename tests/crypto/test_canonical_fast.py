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


# Strings made of the bytes the exactness test looks at, so that they look like numbers.
_tricky = st.text(alphabet=':,[]{}-.eE0123456789nul"\\ ', max_size=12)
_json_tricky = st.recursive(
    st.none() | st.booleans() | _ints | _tricky | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_json, _json_tricky))
def test_exactness_test_is_at_least_as_strict_as_the_regex(value: object) -> None:
    """`_fast_output_is_exact` (digits deleted, markers looked for) never accepts an output the
    regex that specifies it refuses; and what it accepts is the reference's bytes."""
    import orjson

    from app.crypto.canonical import (
        _ORJSON_OPTIONS,
        _fast_output_is_exact,
        _fast_output_is_exact_by_regex,
    )

    try:
        out = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return
    if _fast_output_is_exact(out):
        assert _fast_output_is_exact_by_regex(out)
        assert out == rfc8785.dumps(value)  # type: ignore[arg-type]
    assert canonical_json(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


def test_exactness_markers() -> None:
    from app.crypto.canonical import _fast_output_is_exact, _fast_output_is_exact_by_regex

    for out in [
        b'{"a":1.5}',
        b'{"a":-1.5}',
        b'{"a":1e5}',
        b'{"a":-1E+5}',
        b'{"a":[0,2.25]}',
        b'{"a":[null]}',
        b'{"a":null}',
        b"[1.0]",
        b"[-0.0,1]",
        b'{"a":1,"b":12e-7}',
    ]:
        assert not _fast_output_is_exact(out), out
        assert not _fast_output_is_exact_by_regex(out), out
    for out in [
        b'{"a":1,"b":[-5,6],"c":"2026-12-04T14:02:10Z","d":true,"e":false}',
        b'{"v":"0123456789abcdef","sig":"g2Qte4n1/LXz1xfxCZQo=="}',
        b"[]",
        b"{}",
    ]:
        assert _fast_output_is_exact(out), out
        assert _fast_output_is_exact_by_regex(out), out
