import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidSignal
from app.signals.types import canonicalize

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def test_pdq() -> None:
    c = canonicalize("pdq", f"  {PDQ.upper()} ", quality=87)
    assert (c.type, c.value, c.extra) == ("pdq", PDQ, {"quality": 87})
    low = canonicalize("pdq", PDQ, quality=10, allow_low_quality=True)
    assert low.extra == {"quality": 10}


@pytest.mark.parametrize(
    ("value", "quality", "field"),
    [
        (PDQ, None, "quality"),
        (PDQ, 49, "quality"),
        (PDQ, 101, "quality"),
        (PDQ, -1, "quality"),
        (PDQ, True, "quality"),
        (PDQ, "90", "quality"),
        (PDQ[:-1], 90, "value"),
        (PDQ[:-1] + "g", 90, "value"),
        (12345, 90, "value"),
    ],
)
def test_pdq_refused(value: object, quality: object, field: str) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("pdq", value, quality=quality)  # type: ignore[arg-type]
    assert exc.value.field == field


def test_md5_sha256() -> None:
    assert canonicalize("md5", "0CC175B9C0F1B6A831C399E269772661").value == (
        "0cc175b9c0f1b6a831c399e269772661"
    )
    sha = "CA978112CA1BBDCAFAC231B39A23DC4DA786EFF8147C4E72B9807785AFEE48BB"
    assert canonicalize("sha256", sha).value == sha.lower()
    for t, bad in [
        ("md5", "0cc175b9c0f1b6a831c399e26977266"),
        ("md5", "d41d8cd98f00b204e9800998ecf8427e"),  # empty input
        ("sha256", "0cc175b9c0f1b6a831c399e269772661"),
        ("sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ]:
        with pytest.raises(InvalidSignal) as exc:
            canonicalize(t, bad)
        assert exc.value.field == "value"


def test_quality_only_for_pdq() -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("md5", "0cc175b9c0f1b6a831c399e269772661", quality=90)
    assert exc.value.field == "quality"


@given(st.binary(min_size=144, max_size=144))
def test_photodna_forms_agree(raw: bytes) -> None:
    want = raw.hex()
    forms: list[object] = [
        raw,
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        ",".join(str(b) for b in raw),
    ]
    for form in forms:
        assert canonicalize("photodna", form).value == want


@pytest.mark.parametrize(
    "bad", ["ab" * 143, "zz" * 144, b"\x00" * 10, ",".join(["256"] * 144), "A" * 191]
)
def test_photodna_refused(bad: object) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("photodna", bad)
    assert exc.value.field == "value"


def test_type_lookup_accepts_and_refuses_what_the_enum_does() -> None:
    """`canonicalize` looks a type string up in a dict before Enum's own lookup: members, str
    subclasses and plain strings give the same type, and anything else the same refusal."""
    from app.errors import InvalidSignal
    from app.signals.types import canonicalize
    from app.signals.vocab import SignalType

    class Name(str):
        pass

    md5 = "d41d8cd98f00b204e9800998ecf8427f".replace("d41d", "aaaa")
    for spelling in ("md5", SignalType.MD5, Name("md5")):
        assert canonicalize(spelling, md5).type is SignalType.MD5  # type: ignore[arg-type]
    for bad in ("MD5", "md5 ", "", None, 5, ["md5"], {"md5": 1}, b"md5"):
        with pytest.raises(InvalidSignal) as exc:
            canonicalize(bad, md5)  # type: ignore[arg-type]
        assert exc.value.field == "type"
        assert "unknown signal type" in exc.value.reason
