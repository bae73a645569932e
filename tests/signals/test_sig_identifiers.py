"""Identifiers: client-side normalisation and hashing, and the node refusing raw values.

Synthetic data only: example.org / example.com addresses and phone numbers from fictional
ranges (UK +44 7700 900xxx, US 555-01xx, Australia 0491 570 xxx). phonenumbers does not consider
the UK drama range *valid*, only *possible*; normalize_phone requires possible, by design.
"""

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidInput, InvalidSignal
from app.signals.identifiers import (
    hash_identifier,
    normalize_email,
    normalize_identifier,
    normalize_payment,
    normalize_phone,
    normalize_username,
)
from app.signals.types import canonicalize

KEY = b"\x01" * 32
KID = "fed-2025.1"


def h(t: str, raw: str, **kw: str) -> str:
    return hash_identifier(t, raw, KEY, KID, **kw)


def test_construction_is_documented_hmac() -> None:
    want = hmac.new(KEY, b"email:jane@example.org", hashlib.sha256).hexdigest()
    assert h("email", " Jane@Example.ORG ") == want
    # Domain separation by type.
    assert h("username", "jane@example.org") != want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (" Jane.Doe@Example.ORG ", "jane.doe@example.org"),
        ("jane+promo@example.com", "jane@example.com"),
        ("J.a.n.e+x@GoogleMail.com", "jane@gmail.com"),
        ("jane@bücher.example", "jane@xn--bcher-kva.example"),
        ("+tag@example.org", "+tag@example.org"),
        ("\uff4a\uff41\uff4e\uff45@example.org", "jane@example.org"),
    ],
)
def test_normalize_email(raw: str, want: str) -> None:
    assert normalize_email(raw) == want


@pytest.mark.parametrize("bad", ["jane", "a@b@example.org", "@example.org", "jane@", "ja ne@x.org"])
def test_normalize_email_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(bad)


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)


@given(local=_local, tag=_local, upper=st.booleans(), spaces=st.text(" \t", max_size=3))
def test_email_spellings_hash_alike(local: str, tag: str, upper: bool, spaces: str) -> None:
    base = h("email", f"{local}@example.org")
    spelled = f"{spaces}{local}+{tag}@example.org{spaces}"
    assert h("email", spelled.upper() if upper else spelled) == base


@given(local=_local, dots=st.lists(st.integers(0, 11), max_size=4), gm=st.booleans())
def test_gmail_dots_hash_alike(local: str, dots: list[int], gm: bool) -> None:
    dotted = list(local)
    for i in sorted(set(dots), reverse=True):
        if 0 < i < len(dotted):
            dotted.insert(i, ".")
    domain = "googlemail.com" if gm else "GMail.com"
    assert h("email", "".join(dotted) + f"@{domain}") == h("email", f"{local}@gmail.com")


@given(a=_local, b=_local)
def test_different_emails_hash_differently(a: str, b: str) -> None:
    if a != b:
        assert h("email", f"{a}@example.org") != h("email", f"{b}@example.org")
    assert h("email", f"{a}@example.org") != h("email", f"{a}@example.com")


@pytest.mark.parametrize(
    ("raw", "region", "want"),
    [
        ("07700 900123", "GB", "+447700900123"),
        ("+44 (0)7700 900-123", None, "+447700900123"),
        ("(201) 555-0123", "us", "+12015550123"),
        ("0491 570 006", "AU", "+61491570006"),
        ("+1 201 555 0123 ext. 45", None, "+12015550123"),
    ],
)
def test_normalize_phone(raw: str, region: str | None, want: str) -> None:
    assert normalize_phone(raw, region) == want


@pytest.mark.parametrize(
    ("raw", "region", "field"),
    [
        ("07700 900123", None, "value"),
        ("12", "GB", "value"),
        ("not a number", "GB", "value"),
        ("07700 900123", "XX", "default_region"),
    ],
)
def test_normalize_phone_refused(raw: str, region: str | None, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        normalize_phone(raw, region)
    assert exc.value.field == field


_seps = st.sampled_from(["", " ", "-", ".", "  "])


@given(n=st.integers(0, 999), sep=_seps, paren=st.booleans())
def test_uk_phone_spellings_hash_alike(n: int, sep: str, paren: bool) -> None:
    sub = f"{n:03d}"
    national = f"07700{sep}900{sep}{sub}"
    intl = f"+44{sep}{'(0)' if paren else ''}7700{sep}900{sub}"
    want = h("phone", f"+447700900{sub}")
    assert h("phone", national, default_region="GB") == want
    assert h("phone", intl) == want
    assert h("phone", intl, default_region="US") == want


@given(n=st.integers(0, 99), sep=_seps, paren=st.booleans())
def test_us_phone_spellings_hash_alike(n: int, sep: str, paren: bool) -> None:
    line = f"01{n:02d}"
    area = "(201)" if paren else "201"
    want = h("phone", f"+1201555{line}")
    assert h("phone", f"{area}{sep}555{sep}{line}", default_region="US") == want
    assert h("phone", f"+1{sep}{area}{sep}555-{line}") == want
    assert h("phone", f"1-201-555-{line}", default_region="US") == want


@given(a=st.integers(0, 999), b=st.integers(0, 999))
def test_different_phones_hash_differently(a: int, b: int) -> None:
    if a != b:
        assert h("phone", f"+447700900{a:03d}") != h("phone", f"+447700900{b:03d}")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("@Jane_Doe", "jane_doe"),
        ("  @@JANE_doe  ", "jane_doe"),
        ("\uff20\uff2a\uff41\uff4e\uff45\uff3f\uff24\uff4f\uff45", "jane_doe"),
        ("jane\u200b_doe", "jane_doe"),
        ("Jane   Doe", "jane doe"),
    ],
)
def test_normalize_username(raw: str, want: str) -> None:
    assert normalize_username(raw) == want
    assert normalize_username(raw, "instagram") == want


def test_normalize_username_refused() -> None:
    with pytest.raises(InvalidInput):
        normalize_username(" @ ")
    with pytest.raises(InvalidInput) as exc:
        normalize_username("jane", "Insta Gram")
    assert exc.value.field == "platform"


_handle = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.", min_size=1, max_size=15)


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


@given(name=_handle, at=st.booleans(), upper=st.booleans(), wide=st.booleans())
def test_username_spellings_hash_alike(name: str, at: bool, upper: bool, wide: bool) -> None:
    spelled = ("@" if at else "") + (name.upper() if upper else name)
    if wide:
        spelled = _fullwidth(spelled)
    assert h("username", f" {spelled} ") == h("username", name)


@given(a=_handle, b=_handle)
def test_different_usernames_hash_differently(a: str, b: str) -> None:
    if a != b:
        assert h("username", a) != h("username", b)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("GB82 WEST 1234 5698 7654 32", "iban:GB82WEST12345698765432"),
        ("gb82-west-1234-5698-7654-32", "iban:GB82WEST12345698765432"),
        ("iban:gb82 west 1234 5698 7654 32", "iban:GB82WEST12345698765432"),
        ("$JaneDoe", "cashtag:janedoe"),
        ("cashtag:$JaneDoe", "cashtag:janedoe"),
        (
            "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01",
            "eth:0xabcdef0123456789abcdef0123456789abcdef01",
        ),
        (
            "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",
            "btc:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        ),
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "btc:1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
        ("paypal:Jane.Doe", "paypal:jane.doe"),
        ("xmr:4AbC", "xmr:4AbC"),
    ],
)
def test_normalize_payment(raw: str, want: str) -> None:
    assert normalize_payment(raw) == want


@pytest.mark.parametrize(
    "bad",
    ["GB00 WEST 1234 5698 7654 32", "just text", "iban:GB00WEST12345698765432", "eth:0x12", "$"],
)
def test_normalize_payment_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_payment(bad)


def test_normalize_identifier_and_key_checks() -> None:
    assert normalize_identifier("phone", "07700 900123", default_region="GB") == "+447700900123"
    with pytest.raises(InvalidInput) as exc:
        normalize_identifier("pdq", "x")
    assert exc.value.field == "type"
    with pytest.raises(InvalidInput) as exc:
        hash_identifier("email", "a@example.org", b"short", KID)
    assert exc.value.field == "key"
    with pytest.raises(InvalidInput) as exc:
        hash_identifier("email", "a@example.org", KEY, "Bad Key")
    assert exc.value.field == "key_id"


# --- node side: only keyed hashes are accepted ---------------------------------------------


def test_node_accepts_keyed_hash() -> None:
    value = h("email", "jane@example.org")
    c = canonicalize("email", value.upper(), key_id=KID)
    assert (c.type, c.value, c.extra) == ("email", value, {"key_id": KID})


RAW = [
    ("email", "jane.doe@example.org"),
    ("email", "janedoe"),
    ("phone", "+447700900123"),
    ("phone", "07700900123"),
    ("phone", "447700900123"),
    ("username", "@jane_doe"),
    ("username", "jane_doe"),
    ("payment", "GB82WEST12345698765432"),
    ("payment", "0xabcdef0123456789abcdef0123456789abcdef01"),
    ("email", hashlib.md5(b"jane@example.org").hexdigest()),
]


@pytest.mark.parametrize(("t", "raw"), RAW)
def test_node_refuses_raw_without_echo(t: str, raw: str) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize(t, raw, key_id=KID)
    assert exc.value.field == "value"
    assert f"--type {t}" in exc.value.reason
    assert "hash_identifier" in exc.value.reason
    for shown in (exc.value.reason, str(exc.value)):
        assert raw not in shown
        assert raw.lstrip("@+") not in shown


def test_email_refusal_message() -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("email", "jane@example.org", key_id=KID)
    assert exc.value.reason.startswith("raw email addresses are never accepted")


@pytest.mark.parametrize(
    ("key_id", "field"), [(None, "key_id"), ("Bad Id", "key_id"), ("a" * 65, "key_id")]
)
def test_node_key_id(key_id: str | None, field: str) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("phone", "ab" * 32, key_id=key_id)
    assert exc.value.field == field
