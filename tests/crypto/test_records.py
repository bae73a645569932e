from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto.canonical import canonical_json
from app.crypto.errors import UnknownKeyError
from app.crypto.keys import NodeKey, VerifierKey
from app.crypto.records import (
    record_digest,
    sign_record,
    sign_record_canonical,
    signing_bytes,
    signing_bytes_from,
    verify_record,
)
from app.errors import InvalidInput, VerificationError

KEY = NodeKey.from_seed(b"\x07" * 32)
ORIGIN = "ngo.example"
PINNED = {ORIGIN: KEY.verifier(ORIGIN)}


def resolve(origin: str) -> VerifierKey | None:
    return PINNED.get(origin)


BODY = {"type": "md5", "value": "0" * 32, "categories": ["csam"], "confidence": 90}


def test_sign_record_adds_fields_and_verifies() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    assert record["origin"] == ORIGIN
    assert record["key_id"] == KEY.verifier(ORIGIN).key_id
    assert len(base64.b64decode(record["signature"])) == 64
    assert "signature" not in BODY and "origin" not in BODY  # the body is not modified
    verify_record(record, resolve)
    # The signature covers the canonical bytes without `signature`, origin and key_id included.
    unsigned = {k: v for k, v in record.items() if k != "signature"}
    assert signing_bytes(record) == canonical_json(unsigned)
    KEY.verifier(ORIGIN).verify(canonical_json(unsigned), base64.b64decode(record["signature"]))


def test_key_order_does_not_matter() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    verify_record(dict(reversed(list(record.items()))), resolve)


def test_relayed_record_verifies_against_origin_key() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    relayed = copy.deepcopy(record)
    verify_record(relayed, resolve)  # whoever hands it over, the origin's key decides


def test_resigning_replaces_signature_but_refuses_other_origin() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    again = sign_record(record, KEY, ORIGIN)
    verify_record(again, resolve)
    with pytest.raises(InvalidInput):
        sign_record(record, NodeKey.generate(), "relay.example")


def test_unknown_origin() -> None:
    other = NodeKey.generate()
    record = sign_record(BODY, other, "stranger.example")
    with pytest.raises(UnknownKeyError, match=r"stranger\.example"):
        verify_record(record, resolve)


def test_key_id_mismatch_names_both() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    record["key_id"] = "deadbeef"
    with pytest.raises(VerificationError, match="deadbeef") as exc:
        verify_record(record, resolve)
    assert PINNED[ORIGIN].key_id in str(exc.value)


def test_impostor_key_under_pinned_origin() -> None:
    impostor = NodeKey.generate()
    record = sign_record(BODY, impostor, ORIGIN)
    record["key_id"] = PINNED[ORIGIN].key_id  # pretend to be the pinned key
    with pytest.raises(VerificationError, match="does not verify"):
        verify_record(record, resolve)


def test_resolver_returning_another_origins_key_is_refused() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    with pytest.raises(VerificationError, match="resolver"):
        verify_record(record, lambda _o: KEY.verifier("other.example"))


@pytest.mark.parametrize("field", ["origin", "key_id", "signature"])
def test_missing_fields(field: str) -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    del record[field]
    with pytest.raises(VerificationError, match=field):
        verify_record(record, resolve)


@pytest.mark.parametrize("sig", ["", "not base64!", "AAAA", base64.b64encode(b"x" * 65).decode()])
def test_malformed_signature(sig: str) -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    record["signature"] = sig
    with pytest.raises(VerificationError):
        verify_record(record, resolve)


def test_not_an_object() -> None:
    with pytest.raises(VerificationError):
        verify_record(["origin"], resolve)  # type: ignore[arg-type]


def test_uncanonicalisable_record_is_a_verification_error() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    record["confidence"] = float("nan")
    with pytest.raises(VerificationError):
        verify_record(record, resolve)


def test_record_digest() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    import hashlib

    assert record_digest(record) == hashlib.sha256(canonical_json(record)).digest()
    assert record_digest(dict(reversed(list(record.items())))) == record_digest(record)


json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
bodies = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in ("origin", "key_id", "signature")),
    st.recursive(json_scalars, lambda i: st.lists(i, max_size=3), max_leaves=6),
    max_size=6,
)


def _flip_bit_in_canonical(record: dict[str, Any], bit: int) -> dict[str, Any] | None:
    import json

    raw = bytearray(canonical_json(record))
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        changed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return changed if isinstance(changed, dict) and changed != record else None


@settings(max_examples=60)
@given(body=bodies, data=st.data())
def test_any_bit_flip_breaks_verification(body: dict[str, Any], data: st.DataObject) -> None:
    record = sign_record(body, KEY, ORIGIN)
    verify_record(record, resolve)

    sig = bytearray(base64.b64decode(record["signature"]))
    bit = data.draw(st.integers(0, len(sig) * 8 - 1), label="signature bit")
    sig[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationError):
        verify_record({**record, "signature": base64.b64encode(bytes(sig)).decode()}, resolve)

    # Flip a bit of the serialised record; whenever it still parses as another object,
    # that object must not verify.
    nbits = len(canonical_json(record)) * 8
    bit = data.draw(st.integers(0, nbits - 1), label="record bit")
    changed = _flip_bit_in_canonical(record, bit)
    if changed is not None:
        with pytest.raises(VerificationError):
            verify_record(changed, resolve)


# --- signing_bytes_from: the signed bytes cut out of the full canonical form (app/services/sync.py)

_SIG = base64.b64encode(b"\x01" * 64).decode()


@pytest.mark.parametrize(
    "record",
    [
        {"signature": _SIG},  # the only member
        {"a": 1, "signature": _SIG},  # last
        {"signature": _SIG, "z": 1},  # first
        {"a": 1, "signature": _SIG, "z": [1, {"k": "v"}]},  # between
        # The same member nested: its bytes occur twice, so the slow path answers.
        {"attrs": {"signature": _SIG}, "signature": _SIG, "value": "x"},
        # A string that spells the member (escaped inside JSON, so not a match).
        {"note": f'"signature":"{_SIG}"', "signature": _SIG},
        {"\u00e9": "\U0001f600", "signature": _SIG, "v": -(2**53) + 1},  # reference encoder
        {"signature": "not base64!", "x": 1},  # not strict base64: the slow path
        {"signature": 7, "x": 1},
    ],
)
def test_signing_bytes_from_matches_signing_bytes(record: dict[str, Any]) -> None:
    assert signing_bytes_from(record, canonical_json(record)) == signing_bytes(record)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "signature"),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=8,
        ),
        max_size=6,
    )
)
def test_signing_bytes_from_any_record(body: dict[str, Any]) -> None:
    record = {**body, "signature": _SIG}
    assert signing_bytes_from(record, canonical_json(record)) == signing_bytes(record)


def test_verify_record_with_canonical_bytes() -> None:
    record = sign_record(BODY, KEY, ORIGIN)
    verify_record(record, resolve, canonical=canonical_json(record))
    tampered = {**record, "confidence": 91}
    with pytest.raises(VerificationError):
        verify_record(tampered, resolve, canonical=canonical_json(tampered))


def _respelled(signature: str) -> str:
    """Another base64 spelling of the same 64 bytes: the last data character's unused low
    bits set (it decodes to the same bytes unless decoding is strict about them)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(signature[85])
    return signature[:85] + alphabet[last | 0b1111] + "=="


@pytest.mark.parametrize("with_canonical", [True, False])
def test_verify_record_refuses_another_spelling_of_the_signature(with_canonical: bool) -> None:
    """A signature has one spelling: the same bytes spelled otherwise are refused, whether the
    signed bytes are cut out of the canonical ones (a receiver's fast path) or encoded."""
    record = sign_record(BODY, KEY, ORIGIN)
    other = {**record, "signature": _respelled(record["signature"])}
    assert other["signature"] != record["signature"]
    assert base64.b64decode(other["signature"]) == base64.b64decode(record["signature"])
    with pytest.raises(VerificationError, match="not canonical base64"):
        verify_record(other, resolve, canonical=canonical_json(other) if with_canonical else None)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        # The signature member also nested in the record: cutting it out would be ambiguous,
        # so the signed bytes are encoded afresh.
        {"attrs": {"copy": None}},
        {"aa": "x"},  # a member sorting before "signature" and after the rest: still cut out
    ],
)
def test_verify_record_with_canonical_bytes_in_every_shape(extra: dict[str, Any]) -> None:
    body = {**BODY, **extra}
    record = sign_record(body, KEY, ORIGIN)
    if "attrs" in extra:
        # Re-sign with the record's own signature nested inside it (the member occurs twice).
        nested = {**body, "attrs": {"copy": {"signature": record["signature"]}}}
        record = sign_record(nested, KEY, ORIGIN)
        record["attrs"]["copy"]["signature"] = record["signature"]
        with pytest.raises(VerificationError):  # changed after signing: must not verify
            verify_record(record, resolve, canonical=canonical_json(record))
        return
    verify_record(record, resolve, canonical=canonical_json(record))
    for name, value in (("confidence", 91), ("signature", _respelled(record["signature"]))):
        tampered = {**record, name: value}
        with pytest.raises(VerificationError):
            verify_record(tampered, resolve, canonical=canonical_json(tampered))


# --- sign_record_canonical: the signed record and its canonical bytes from one encoding


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        {},
        {"a": 1},  # before "key_id"/"origin"/"signature"
        {"zz": [1, {"signature": "x"}]},  # after them, with a nested "signature"
        # The stand-in's own text nested under "signature": its member occurs twice, so the
        # exact path answers.
        {"attrs": {"signature": "\x00signet-signature\x00"}, "value": "x"},
        {"\u00e9": "\U0001f600", "v": -(2**53) + 1},  # reference encoder
    ],
)
def test_sign_record_canonical_is_sign_record_and_its_encoding(body: dict[str, Any]) -> None:
    record, canonical = sign_record_canonical(body, KEY, ORIGIN)
    # Ed25519 is deterministic: the same key and bytes give the same signature.
    assert record == sign_record(body, KEY, ORIGIN)
    assert canonical == canonical_json(record)
    verify_record(record, resolve, canonical=canonical)


@settings(max_examples=200, deadline=None)
@given(body=bodies)
def test_sign_record_canonical_any_body(body: dict[str, Any]) -> None:
    record, canonical = sign_record_canonical(body, KEY, ORIGIN)
    assert record == sign_record(body, KEY, ORIGIN)
    assert canonical == canonical_json(record)


def test_sign_record_canonical_refuses_another_origin() -> None:
    with pytest.raises(InvalidInput):
        sign_record_canonical({**BODY, "origin": "other.example"}, KEY, ORIGIN)
