from __future__ import annotations

import base64

import pytest

from app.crypto.errors import MalformedError
from app.crypto.keys import NodeKey, VerifierKey, parse_note_private_key
from app.crypto.note import open_note, parse_note, sign_note
from app.errors import VerificationError

from ._vectors import load

CASES = load("signed_note.json")["cases"]
A = NodeKey.from_seed(b"\x01" * 32)
B = NodeKey.from_seed(b"\x02" * 32)
VA, VB = A.verifier("a.example"), B.verifier("b.example")
TEXT = "hello\nworld\n"


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_vectors(case: dict[str, object]) -> None:
    vkey = VerifierKey.parse(str(case["vkey"]), any_name=True)
    if case["valid"]:
        assert open_note(str(case["note"]), [vkey]) == (case["text"], [vkey.origin])
    else:
        with pytest.raises(VerificationError):
            open_note(str(case["note"]), [vkey])


def test_signing_reproduces_the_vector() -> None:
    case = CASES[0]
    name, key = parse_note_private_key(str(case["skey"]))
    assert sign_note(str(case["text"]), key, name) == case["note"]


def test_sign_open_round_trip_and_line_format() -> None:
    note = sign_note(TEXT, A, "a.example")
    assert note.startswith(TEXT + "\n\u2014 a.example ")
    raw = base64.b64decode(note.rsplit(" ", 1)[1])
    assert raw[:4] == VA.key_hash and len(raw) == 68
    assert open_note(note, [VA]) == (TEXT, ["a.example"])


def test_unknown_signers_are_ignored_and_several_known_reported() -> None:
    stranger = NodeKey.generate()
    note = sign_note(TEXT, A, "a.example")
    for key, name in ((stranger, "s.example"), (B, "b.example")):
        note += sign_note(TEXT, key, name).split("\n\n", 1)[1]
    assert open_note(note, [VA, VB]) == (TEXT, ["a.example", "b.example"])
    assert open_note(note, [VB]) == (TEXT, ["b.example"])


def test_no_known_signer() -> None:
    note = sign_note(TEXT, A, "a.example")
    with pytest.raises(VerificationError, match="no valid signature"):
        open_note(note, [VB])
    # Same name, different key: its key hash differs, so it is just unknown.
    with pytest.raises(VerificationError):
        open_note(note, [B.verifier("a.example")])


def test_known_key_bad_signature_is_an_error_even_with_a_good_one() -> None:
    good = sign_note(TEXT, A, "a.example")
    forged = sign_note("other\n", B, "b.example").split("\n\n", 1)[1]
    with pytest.raises(VerificationError, match=r"b\.example"):
        open_note(good + forged, [VA, VB])


def test_duplicate_signature_lines_count_once() -> None:
    note = sign_note(TEXT, A, "a.example")
    line = note.split("\n\n", 1)[1]
    assert open_note(note + line, [VA]) == (TEXT, ["a.example"])


def test_text_with_blank_lines() -> None:
    text = "a\n\nb\n"
    note = sign_note(text, A, "a.example")
    assert open_note(note, [VA]) == (text, ["a.example"])


@pytest.mark.parametrize(
    "note",
    [
        "",
        "no newline",
        "text\n",
        "text\n\n",
        "text\n\n\n",
        "text\n\n— a.example\n",
        "text\n\n— a.example \n",
        "text\n\n- a.example AAAAAAA=\n",
        "text\n\n— a.example AAAA\n",  # fewer than 5 bytes
        "text\n\n— a+b AAAAAAA=\n",
        "text\n\n— a.example !!!!\n",
        "text\n\n— a.example AAAAAAA=",
        "te\x00xt\n\n— a.example AAAAAAA=\n",
        "text\n\n" + "— a.example AAAAAAA=\n" * 101,
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(MalformedError):
        open_note(note, [VA])


@pytest.mark.parametrize("text", ["", "no newline", "bad\x07char\n"])
def test_sign_refuses_bad_text(text: str) -> None:
    with pytest.raises(MalformedError):
        sign_note(text, A, "a.example")


@pytest.mark.parametrize("name", ["", "a b", "a+b"])
def test_sign_refuses_bad_name(name: str) -> None:
    with pytest.raises(MalformedError):
        sign_note(TEXT, A, name)


def test_parse_note_is_unverified() -> None:
    note = sign_note(TEXT, A, "a.example")
    parsed = parse_note(note)
    assert parsed.text == TEXT
    assert [s.name for s in parsed.signatures] == ["a.example"]
    assert parsed.signatures[0].line() == note.split("\n\n", 1)[1]
