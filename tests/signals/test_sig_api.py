import pytest

import app.signals.identifiers as client
import app.signals.types as types
from app.errors import InvalidInput, InvalidSignal
from app.signals.types import Canonical, canonicalize


def test_public_api_pinned() -> None:
    assert sorted(types.__all__) == [
        "Canonical", "canonicalize", "tlsh_distance", "url_canonical", "url_hash",
    ]  # fmt: skip
    assert {
        "hash_identifier", "normalize_email", "normalize_identifier",
        "normalize_payment", "normalize_phone", "normalize_username",
    } <= set(client.__all__)  # fmt: skip


def test_unknown_type() -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("sha1", "x")
    assert exc.value.field == "type"
    assert exc.value.reason.startswith("unknown signal type 'sha1'; known: pdq, md5")
    assert isinstance(exc.value, InvalidInput)


def test_canonical_is_frozen() -> None:
    c = canonicalize("keyword", "Hello")
    assert isinstance(c, Canonical) and c.extra == {"fold": "2"}
    with pytest.raises(AttributeError):
        c.value = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"key_id": "k1"}, "key_id"), ({"domain": "example.org"}, "domain")],
)
def test_misplaced_options(kw: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("keyword", "hello", **kw)  # type: ignore[arg-type]
    assert exc.value.field == field
