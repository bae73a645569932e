import hashlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.errors import InvalidSignal
from app.signals.types import canonicalize, url_canonical, url_hash
from app.signals.types.web import url_domain


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("https://example.org", "https://example.org/"),
        ("HTTPS://Example.ORG:443/A/b?X=Y#top", "https://example.org/A/b?X=Y"),
        ("http://example.org:80/", "http://example.org/"),
        ("http://example.org:8080", "http://example.org:8080/"),
        ("http://user:pw@example.org/", "http://example.org/"),
        ("http://example.org./a/./b/../c", "http://example.org/a/c"),
        ("http://example.org/../../x", "http://example.org/x"),
        ("http://example.org/%7euser/%2fx%2F", "http://example.org/~user/%2Fx%2F"),
        ("http://example.org/%2E%2E/x", "http://example.org/x"),
        ("http://example.org/a b/ä", "http://example.org/a%20b/%C3%A4"),
        ("http://example.org/100%", "http://example.org/100%25"),
        ("http://example.org/p?q=a+b&r=%e2%82%ac&s", "http://example.org/p?q=a+b&r=%E2%82%AC&s"),
        ("http://example.org/?", "http://example.org/"),
        ("http://example.org//a//b", "http://example.org//a//b"),
        ("https://Bücher.example.org/", "https://xn--bcher-kva.example.org/"),
        ("https://%65xample.org/", "https://example.org/"),
        ("http://192.0.2.1:80/x", "http://192.0.2.1/x"),
        ("http://[2001:DB8:0:0::1]:8080/", "http://[2001:db8::1]:8080/"),
    ],
)
def test_url_canonical(raw: str, want: str) -> None:
    assert url_canonical(raw) == want
    assert url_hash(raw) == hashlib.sha256(want.encode()).hexdigest()


def test_url_signal() -> None:
    c = canonicalize("url", "https://WWW.Example.org/path#x")
    assert c.value == hashlib.sha256(b"https://www.example.org/path").hexdigest()
    assert c.extra == {"domain": "www.example.org", "canon": "2", "registrable": "example.org"}
    assert url_domain("https://WWW.Example.org/path#x") == "www.example.org"
    # Pre-hashed form: the node never needs the raw URL.
    pre = canonicalize("url", c.value.upper(), domain="WWW.example.org.")
    # (No `canon` on the pre-hashed form: the node cannot tell which form the client hashed.)
    assert (pre.value, pre.extra) == (
        c.value,
        {"domain": "www.example.org", "registrable": "example.org"},
    )
    assert canonicalize("url", "http://[::1]/").extra == {"domain": "[::1]", "canon": "2"}


@pytest.mark.parametrize(
    ("value", "domain", "field"),
    [
        ("ftp://example.org/", None, "value"),
        ("example.org/path", None, "value"),
        ("javascript:alert(1)", None, "value"),
        ("http:///path", None, "value"),
        ("http://exa mple.org/", None, "value"),
        ("http://example.org:99999/", None, "value"),
        ("http://example.org/\nx", None, "value"),
        ("http://[zz::1]/", None, "value"),
        ("http://-bad-.example.org/", None, "value"),
        ("a" * 64, None, "domain"),
        ("a" * 64, "not a domain", "domain"),
        ("https://example.org/", "example.com", "domain"),
        (42, None, "value"),
    ],
)
def test_url_refused(value: object, domain: str | None, field: str) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("url", value, domain=domain)
    assert exc.value.field == field


_segment = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]))


@given(
    scheme=st.sampled_from(["http", "HTTP", "https"]),
    host=st.sampled_from(["example.org", "EXAMPLE.com", "bücher.example", "192.0.2.7", "[::1]"]),
    port=st.sampled_from(["", ":80", ":443", ":8080"]),
    path=st.lists(
        st.one_of(st.sampled_from([".", "..", "", "%2e", "%7E", "%zz", "%41"]), _segment),
        max_size=6,
    ),
    query=st.one_of(st.none(), _segment),
    fragment=st.one_of(st.none(), _segment),
)
@example(scheme="http", host="example.org", port="", path=["a%2", "5"], query=None, fragment=None)
def test_url_canonical_idempotent(
    scheme: str, host: str, port: str, path: list[str], query: str | None, fragment: str | None
) -> None:
    url = f"{scheme}://{host}{port}/" + "/".join(p.replace("?", "").replace("#", "") for p in path)
    if query is not None:
        url += "?" + query.replace("#", "")
    if fragment is not None:
        url += "#" + fragment
    try:
        once = url_canonical(url)
    except InvalidSignal:
        return
    assert once.isascii()
    assert url_canonical(once) == once
    assert url_hash(once) == url_hash(url)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Example.ORG.", "example.org"),
        (" sub.example.com ", "sub.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\u3002org", "example.org"),
        ("_dmarc.example.org", "_dmarc.example.org"),
    ],
)
def test_domain(raw: str, want: str) -> None:
    assert canonicalize("domain", raw).value == want


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "localhost",
        "example..org",
        ".example.org",
        "-x.example.org",
        "192.0.2.1",
        "https://example.org",
        "example.org/path",
        "exa mple.org",
        "xn--zz-.example",
        "a" * 64 + ".example",
        ".".join(["abcdefghi"] * 26),
        None,
    ],
)
def test_domain_refused(bad: object) -> None:
    with pytest.raises(InvalidSignal) as exc:
        canonicalize("domain", bad)
    assert exc.value.field == "value"
