"""Observations 6 and 7: URLs read as browsers read them; IBANs checked per country.

Pure canonicalisation checks, plus the API on SQLite and PostgreSQL: a signal hashed under
canonical form 1 (stored before this change) still matches after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from app.errors import InvalidInput
from app.services.node import Node
from app.signals.identifiers import normalize_payment
from app.signals.types import canonicalize, url_canonical
from app.signals.types.web import url_canonical_v1, url_hash_v1

BACKSLASH = "http://example.com\\@evil.com/x"


def test_backslash_before_at_is_a_path_as_in_browsers() -> None:
    c = canonicalize("url", BACKSLASH)
    assert c.extra["domain"] == "example.com"  # form 1 said evil.com
    assert url_canonical(BACKSLASH) == "http://example.com/@evil.com/x"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://0x7f.1/a", "http://127.0.0.1/a"),
        ("HTTP://User:pw@EXAMPLE.com:80/a/../b/%7e%41?q=1#f", "http://example.com/b/~A?q=1"),
        ("https://bücher.example/ä?x=ü", "https://xn--bcher-kva.example/%C3%A4?x=%C3%BC"),
        ("http://[0:0::1]:8080", "http://[::1]:8080/"),
    ],
)
def test_browser_parsing(raw: str, want: str) -> None:
    assert url_canonical(raw) == want
    extra = canonicalize("url", raw).extra
    assert extra["domain"] == (want.split("/")[2].rsplit(":", 1)[0] if "[" not in want else "[::1]")
    assert extra["canon"] == "2"


def test_form_1_is_kept_for_old_signals() -> None:
    assert url_canonical_v1(BACKSLASH).startswith("http://evil.com/")
    assert url_hash_v1("http://127.1/") is None  # form 1 refused shorthand


def test_old_form_signals_keep_matching(
    client: Any, node: Node, make_key: Callable[..., dict[str, str]]
) -> None:
    """A signal published under form 1 (as the previous release stored it) still matches a query
    for the same raw URL, and a new signal matches by form 2."""
    auth = make_key("submit", "match")
    old_hash = hashlib.sha256(url_canonical_v1(BACKSLASH).encode()).hexdigest()
    r = client.post(
        "/v1/signals",
        headers=auth,
        json={
            "signals": [
                {"type": "url", "value": old_hash, "domain": "evil.com", "categories": ["csam"]},
                {"type": "url", "value": "http://127.1/page", "categories": ["csam"]},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert [i["status"] for i in r.json()["items"]] == ["created", "created"], r.text
    queries = [
        {"type": "url", "value": BACKSLASH},
        {"type": "url", "value": "http://127.0.0.1/page"},
    ]
    results = client.post("/v1/match", headers=auth, json={"queries": queries}).json()["results"]
    assert [len(res["matches"]) for res in results] == [1, 1]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("DE41 3704 0044 0532 013", "wrong length"),  # mod-97 valid, three digits short
        ("XX25 1234 5678 9012 3456 7", "unknown IBAN country code"),
        ("GB82 WEST 1234 5698 7654 33", "checksum"),
    ],
)
def test_iban_refusals(raw: str, reason: str) -> None:
    compact = raw.replace(" ", "")
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    if reason != "checksum":
        assert int(digits) % 97 == 1  # the old regex + mod-97 check let these through
    with pytest.raises(InvalidInput) as exc:
        normalize_payment("iban:" + raw)
    assert reason in exc.value.reason and compact not in exc.value.reason
    with pytest.raises(InvalidInput):
        normalize_payment(raw)


def test_valid_ibans_still_pass() -> None:
    assert normalize_payment("GB82 WEST 1234 5698 7654 32") == "iban:GB82WEST12345698765432"
    assert normalize_payment("iban:de89-3704-0044-0532-0130-00") == "iban:DE89370400440532013000"
