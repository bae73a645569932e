"""RFC 9421 / RFC 9530: vectors from the RFC, then sign -> verify properties."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from app.errors import FederationError, VerificationError
from app.federation import sfv
from app.federation.errors import (
    BadSignature,
    DigestMismatch,
    MalformedSignature,
    MissingComponent,
    MissingSignature,
    NonceCacheFull,
    ReplayedRequest,
    SignatureRefused,
    StaleRequest,
    UnknownKey,
)
from app.federation.httpsig import (
    MemoryNonceCache,
    VerifiedRequest,
    content_digest,
    sign_request,
    signature_base,
    verify_content_digest,
    verify_request,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "rfc9421_ed25519.json").read_text())
CASES = {c["name"]: c for c in VECTORS["cases"]}


def _rfc_key() -> SigningKey:
    # PKCS#8 for Ed25519 is a fixed 16-byte prefix followed by the 32-byte seed.
    der = base64.b64decode("".join(VECTORS["private_key_pem"].strip().splitlines()[1:-1]))
    assert der[:16] == bytes.fromhex("302e020100300506032b657004220420")
    return SigningKey(der[16:])


def _rfc_public() -> bytes:
    der = base64.b64decode("".join(VECTORS["public_key_pem"].strip().splitlines()[1:-1]))
    return der[-32:]


def verifier(vk: VerifyKey) -> Callable[[bytes, bytes], None]:
    def verify(msg: bytes, sig: bytes) -> None:
        try:
            vk.verify(msg, sig)
        except BadSignatureError as exc:
            raise VerificationError("bad signature") from exc

    return verify


# --- RFC vectors ------------------------------------------------------------------------------


def test_rfc_key_pair_matches() -> None:
    assert bytes(_rfc_key().verify_key) == _rfc_public()


def test_b26_signature_base_and_signature() -> None:
    case = CASES["B.2.6"]
    headers = [
        ("Host", "example.com"),
        ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("Content-Type", "application/json"),
        ("Content-Length", "18"),
    ]
    base = signature_base(
        "POST",
        "https://example.com/foo?param=Value&Pet=dog",
        headers,
        ["date", "@method", "@path", "@authority", "content-type", "content-length"],
        {"created": 1618884473, "keyid": "test-key-ed25519"},
    )
    assert base.decode() == case["signature_base"]
    # Ed25519 is deterministic: signing the base must reproduce the RFC's signature exactly.
    assert base64.b64encode(_rfc_key().sign(base).signature).decode() == case["signature"]
    VerifyKey(_rfc_public()).verify(base, base64.b64decode(case["signature"]))


def test_b4_signature_base_combines_repeated_fields() -> None:
    case = CASES["B.4"]
    headers = [("Host", "example.org"), ("Accept", "application/json"), ("Accept", "*/*")]
    base = signature_base(
        "GET",
        "https://example.org/demo?name=Dina",
        headers,
        ["@method", "@path", "@authority", "accept"],
        {"created": 1618884473, "keyid": "test-key-ed25519"},
    )
    assert base.decode() == case["signature_base"]
    assert base64.b64encode(_rfc_key().sign(base).signature).decode() == case["signature"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_vector_signature_input_parses_and_reserialises(name: str) -> None:
    case = CASES[name]
    parsed = sfv.parse_dictionary(case["signature_input"])
    (label, inner), *_ = parsed.items()
    assert isinstance(inner, sfv.InnerList)
    assert f"{label}={sfv.serialize_inner_list(inner)}" == case["signature_input"]
    # The base's last line is the same serialisation.
    assert case["signature_base"].endswith(sfv.serialize_inner_list(inner))


def test_content_digest_rfc9530_example() -> None:
    body = b'{"hello": "world"}'
    assert content_digest(body) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    verify_content_digest(content_digest(body), body)
    with pytest.raises(DigestMismatch):
        verify_content_digest(content_digest(body), body + b" ")
    for bad in ["", "sha-256=1", "md5=:AAAA:", "sha-256=:X48E9q:", "garbage((("]:
        with pytest.raises(DigestMismatch):
            verify_content_digest(bad, body)


def test_derived_components() -> None:
    def one(name: str, url: str) -> str:
        base = signature_base("get", url, {}, [name], {})
        return base.decode().split("\n")[0].split(": ", 1)[1]

    assert one("@method", "https://a.example/") == "get"
    assert one("@authority", "https://A.Example:443/x") == "a.example"
    assert one("@authority", "http://a.example:8080/x") == "a.example:8080"
    assert one("@authority", "http://[::1]:80/x") == "[::1]"
    assert one("@path", "https://a.example") == "/"
    assert one("@query", "https://a.example/p") == "?"
    assert one("@query", "https://a.example/p?a=1&b") == "?a=1&b"
    assert one("@request-target", "https://a.example/p?a=1") == "/p?a=1"
    assert one("@scheme", "HTTPS://a.example/") == "https"
    assert one("@target-uri", "https://a.example/p?q") == "https://a.example/p?q"


def test_base_refuses_line_injection_and_bad_names() -> None:
    with pytest.raises(MalformedSignature):
        signature_base("GET", "https://a/", {"x": 'a\n"@method": POST'}, ["x"], {})
    with pytest.raises(MissingComponent):
        signature_base("GET", "https://a/", {}, ["x-absent"], {})
    with pytest.raises(MalformedSignature):
        signature_base("GET", "https://a/", {}, ["@method", "@method"], {})
    with pytest.raises(MalformedSignature):
        signature_base("GET", "https://a/", {}, ["@signature-params"], {})
    with pytest.raises(MalformedSignature):
        signature_base("GET", "https://a/", {}, ["@method"], {"bogus": 1})


# --- sign -> verify ---------------------------------------------------------------------------

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))
ORIGIN = "ngo.example"
URL = "https://hub.example/federation/v1/notify?x=1"
NOW = 1_700_000_000
BODY = b'{"origin":"ngo.example","size":3}'


def resolver(keys: dict[str, SigningKey]) -> Callable[[str], Callable[[bytes, bytes], None] | None]:
    def resolve(keyid: str) -> Callable[[bytes, bytes], None] | None:
        key = keys.get(keyid)
        return None if key is None else verifier(key.verify_key)

    return resolve


def signed(
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    *,
    created: int = NOW,
    nonce: str | None = None,
    key: SigningKey = KEY,
    expires_in: int = 300,
) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/json")]
    extra = sign_request(
        method,
        url,
        headers,
        body,
        keyid=ORIGIN,
        sign=lambda m: key.sign(m).signature,
        created=created,
        expires_in=expires_in,
        nonce=nonce,
        components=["content-type"],
    )
    return headers + list(extra.items())


def verify(
    headers: list[tuple[str, str]],
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    *,
    now: int = NOW,
    cache: MemoryNonceCache | None = None,
) -> VerifiedRequest:
    return verify_request(
        method,
        url,
        headers,
        body,
        resolve_key=resolver({ORIGIN: KEY}),
        now=now,
        max_skew=30,
        nonce_cache=cache if cache is not None else MemoryNonceCache(360),
    )


def test_sign_request_headers() -> None:
    out = sign_request(
        "POST", URL, {}, BODY, keyid=ORIGIN, sign=lambda m: KEY.sign(m).signature,
        created=NOW, nonce="n1",
    )  # fmt: skip
    assert set(out) == {"Signature-Input", "Signature", "Content-Digest"}
    assert out["Signature-Input"] == (
        'sig1=("@method" "@target-uri" "content-digest");created=1700000000;'
        'expires=1700000300;nonce="n1";keyid="ngo.example";alg="ed25519"'
    )
    no_body = sign_request(
        "GET", URL, {}, b"", keyid=ORIGIN, sign=lambda m: KEY.sign(m).signature, created=NOW
    )
    assert "Content-Digest" not in no_body
    assert '("@method" "@target-uri")' in no_body["Signature-Input"]
    with pytest.raises(ValueError):
        sign_request("GET", URL, {}, b"", keyid=ORIGIN, sign=bytes, created=NOW, expires_in=301)
    with pytest.raises(ValueError):
        sign_request("GET", URL, {}, b"", keyid=ORIGIN, sign=bytes, created=NOW, label="A,b")


def test_round_trip() -> None:
    got = verify(signed(nonce="abc"))
    assert got == VerifiedRequest(
        keyid=ORIGIN,
        created=NOW,
        expires=NOW + 300,
        nonce="abc",
        label="sig1",
        components=("@method", "@target-uri", "content-digest", "content-type"),
    )
    # A GET without body needs no digest.
    verify(signed("GET", body=b""), "GET", body=b"")


def test_mapping_headers_work_too() -> None:
    verify(dict(signed()))  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=200),
    created=st.integers(0, 2**40),
    path=st.text("abcxyz/-_~%.", max_size=20),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
)
def test_round_trip_property(body: bytes, created: int, path: str, method: str) -> None:
    url = f"https://peer.example/{path}"
    verify(signed(method, url, body, created=created), method, url, body, now=created)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_change_is_refused(data: st.DataObject) -> None:
    headers = signed()
    which = data.draw(st.sampled_from(["method", "url", "body", "header", "signature"]))
    method, url, body = "POST", URL, BODY
    if which == "method":
        method = data.draw(st.sampled_from(["GET", "PUT", "post", "DELETE"]))
        expected: type[Exception] = BadSignature
    elif which == "url":
        url = data.draw(st.sampled_from([URL + "&y=2", URL.replace("hub", "hob"), URL[:-1]]))
        expected = BadSignature
    elif which == "body":
        body = data.draw(st.binary(max_size=64).filter(lambda b: b and b != BODY))
        expected = DigestMismatch
    elif which == "header":
        ctype = data.draw(st.sampled_from(["text/plain", "application/json ; x", "a"]))
        headers = [("Content-Type", ctype), *headers[1:]]
        expected = BadSignature
    else:
        sig = dict(headers)["Signature"]
        raw = bytearray(base64.b64decode(sig[len("sig1=:") : -1]))
        i = data.draw(st.integers(0, 63))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
        headers = [
            (k, f"sig1=:{base64.b64encode(raw).decode()}:" if k == "Signature" else v)
            for k, v in headers
        ]
        expected = BadSignature
    with pytest.raises(expected):
        verify(headers, method, url, body)


def test_body_swap_with_recomputed_digest_is_refused() -> None:
    headers = [(k, content_digest(b"other") if k == "Content-Digest" else v) for k, v in signed()]
    with pytest.raises(BadSignature):
        verify(headers, body=b"other")


def test_replay_is_refused() -> None:
    cache = MemoryNonceCache(360)
    headers = signed(nonce="once")
    verify(headers, cache=cache)
    with pytest.raises(ReplayedRequest) as err:
        verify(headers, cache=cache, now=NOW + 10)
    assert err.value.status == 401
    # A different nonce is fine.
    verify(signed(nonce="twice"), cache=cache)


def test_failed_verification_stores_no_nonce() -> None:
    cache = MemoryNonceCache(360)
    with pytest.raises(BadSignature):
        verify(signed(nonce="n", key=OTHER), cache=cache)
    assert len(cache) == 0
    verify(signed(nonce="n"), cache=cache)


@pytest.mark.parametrize(
    ("created", "now", "expires_in"),
    [
        (NOW + 31, NOW, 300),  # in the future beyond skew
        (NOW - 400, NOW, 300),  # expired beyond skew
        (NOW - 100, NOW, 60),
    ],
)
def test_stale_is_refused(created: int, now: int, expires_in: int) -> None:
    with pytest.raises(StaleRequest):
        verify(signed(created=created, expires_in=expires_in), now=now)


def test_skew_is_tolerated() -> None:
    verify(signed(created=NOW + 30), now=NOW)
    verify(signed(created=NOW - 330), now=NOW)


def _with_input(params: str, created: int = NOW) -> list[tuple[str, str]]:
    """A request whose Signature-Input we write by hand, signed correctly."""
    covered = ["@method", "@target-uri", "content-digest"]
    inner = '("@method" "@target-uri" "content-digest")' + params
    parsed = sfv.parse_dictionary(f"s={inner}")["s"]
    assert isinstance(parsed, sfv.InnerList)
    headers = [("Content-Digest", content_digest(BODY))]
    base = signature_base("POST", URL, headers, covered, dict(parsed.params))  # type: ignore[arg-type]
    sig = base64.b64encode(KEY.sign(base).signature).decode()
    return [*headers, ("Signature-Input", f"s={inner}"), ("Signature", f"s=:{sig}:")]


def test_window_longer_than_five_minutes_is_refused() -> None:
    with pytest.raises(StaleRequest):
        verify(_with_input(f';created={NOW};expires={NOW + 301};nonce="a";keyid="{ORIGIN}"'))
    with pytest.raises(StaleRequest):
        verify(_with_input(f';created={NOW};expires={NOW};nonce="a";keyid="{ORIGIN}"'))
    verify(_with_input(f';created={NOW};expires={NOW + 300};nonce="a";keyid="{ORIGIN}"'))


@pytest.mark.parametrize(
    "params",
    [
        f';expires={NOW + 10};nonce="a";keyid="{ORIGIN}"',  # no created
        f';created={NOW};nonce="a";keyid="{ORIGIN}"',  # no expires
        f';created={NOW};expires={NOW + 10};keyid="{ORIGIN}"',  # no nonce
        f';created={NOW};expires={NOW + 10};nonce="a"',  # no keyid
        f';created={NOW};expires={NOW + 10};nonce="a";keyid="{ORIGIN}";alg="rsa-pss-sha512"',
        f';created={NOW};expires={NOW + 10};nonce="a";keyid={ORIGIN}',  # token, not string
        f';created="{NOW}";expires={NOW + 10};nonce="a";keyid="{ORIGIN}"',
        f';created={NOW};expires={NOW + 10};nonce="a";keyid="{ORIGIN}";extra=1',
    ],
)
def test_bad_parameters_are_malformed(params: str) -> None:
    with pytest.raises(MalformedSignature) as err:
        verify(_with_input(params))
    assert err.value.status == 400


def test_unknown_key_is_403() -> None:
    headers = signed()
    with pytest.raises(UnknownKey) as err:
        verify_request(
            "POST", URL, headers, BODY, resolve_key=lambda _k: None, now=NOW, max_skew=30,
            nonce_cache=MemoryNonceCache(360),
        )  # fmt: skip
    assert err.value.status == 403


def test_missing_signature_and_components() -> None:
    with pytest.raises(MissingSignature) as err:
        verify([("Content-Type", "application/json")])
    assert err.value.status == 401
    # A signature that does not cover content-digest is refused when there is a body.
    get_headers = signed("POST", body=b"")
    with pytest.raises(MissingComponent):
        verify(get_headers, "POST", body=BODY)
    # Covering a header that is not there.
    headers = [(k, v) for k, v in signed() if k != "Content-Type"]
    with pytest.raises(MissingComponent):
        verify(headers)


def test_chooses_the_signature_that_covers_what_we_need() -> None:
    ours = dict(signed())
    proxy = '("@authority");created=1;keyid="proxy"'
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Digest", ours["Content-Digest"]),
        ("Signature-Input", f"proxy={proxy}, {ours['Signature-Input']}"),
        ("Signature", f"proxy=:{base64.b64encode(bytes(64)).decode()}:"),
        ("Signature", ours["Signature"]),
    ]
    assert verify(headers).label == "sig1"


GARBAGE_TEXT = st.text(max_size=120) | st.sampled_from(
    [
        "",
        "sig1=",
        "sig1=(",
        'sig1=("@method"',
        "sig1=:::",
        'sig1=("@method");created=1.5',
        'sig1=("@method");created=-1',
        'sig1=("@method");created=99999999999999999',
        'sig1=("@method" "@method")',
        'sig1=("@method";sf)',
        "sig1=(@method)",
        'sig1=("\\x")',
        "sig1=?2",
        "sig1, sig1",
        "SIG1=()",
        "sig1=:AAAA:, sig1=:AAAA:",
        'sig1=("é")',
        "sig1=()" + "\x00",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    sig_input=GARBAGE_TEXT,
    sig=GARBAGE_TEXT,
    extra=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=4),
    body=st.binary(max_size=20),
)
def test_garbage_headers_raise_only_our_errors(
    sig_input: str, sig: str, extra: list[tuple[str, str]], body: bytes
) -> None:
    headers = [*extra, ("Signature-Input", sig_input), ("Signature", sig)]
    with pytest.raises(SignatureRefused):
        verify(headers, body=body)


@settings(max_examples=200, deadline=None)
@given(
    suffix=st.text(max_size=60),
    label=st.sampled_from(["sig1", "x"]),
    components=st.lists(st.text(max_size=12), max_size=4),
)
def test_almost_valid_inputs_raise_only_our_errors(
    suffix: str, label: str, components: list[str]
) -> None:
    good = dict(signed())
    inner = "(" + " ".join(json.dumps(c) for c in components) + ")" + suffix
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Digest", good["Content-Digest"]),
        ("Signature-Input", f"{label}={inner}"),
        ("Signature", good["Signature"]),
    ]
    with pytest.raises(FederationError):
        verify(headers)


# --- structured fields --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a=1, a=2",  # duplicate key
        "a=1;p;p",  # duplicate parameter
        "a=1.5",  # decimal
        "a=1,",  # trailing comma
        'a="\\n"',  # bad escape
        "a=:not base64!:",
        "a=(1 2",
        "A=1",
        "a=1 b=2",
        "a=1234567890123456",
    ],
)
def test_sfv_refuses(text: str) -> None:
    with pytest.raises(sfv.SfvError):
        sfv.parse_dictionary(text)


def test_sfv_parses_the_subset() -> None:
    parsed = sfv.parse_dictionary(' a=1, b;x=?0 ,\tc=("s\\"q" tok/en:x);k=:AQI=:, d=-7  ')
    assert parsed == {
        "a": sfv.Item(1),
        "b": sfv.Item(True, (("x", False),)),
        "c": sfv.InnerList(
            (sfv.Item('s"q'), sfv.Item(sfv.Token("tok/en:x"))), (("k", b"\x01\x02"),)
        ),
        "d": sfv.Item(-7),
    }
    c = parsed["c"]
    assert isinstance(c, sfv.InnerList)
    assert sfv.serialize_inner_list(c) == '("s\\"q" tok/en:x);k=:AQI=:'


# --- nonce cache --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_nonce_cache_expires_and_bounds() -> None:
    clock = Clock()
    cache = MemoryNonceCache(10, max_entries=2, clock=clock)
    assert cache.check_and_store("a", "n1", 1005)
    assert not cache.check_and_store("a", "n1", 1005)
    assert cache.check_and_store("b", "n1", 1005)  # nonces are per keyid
    with pytest.raises(NonceCacheFull) as err:
        cache.check_and_store("a", "n2", 1005)
    assert err.value.status == 503
    clock.t = 1009  # window keeps them past expires_at
    assert not cache.check_and_store("a", "n1", 1005)
    clock.t = 1011
    assert len(cache) == 0
    assert cache.check_and_store("a", "n1", 1100)
    clock.t = 1050
    assert not cache.check_and_store("a", "n1", 1100)  # expires_at beyond the window holds


def test_nonce_cache_is_thread_safe() -> None:
    cache = MemoryNonceCache(60)
    wins: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for i in range(200):
            ok = cache.check_and_store("k", f"n{i}", 2**40)
            with lock:
                wins.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 200
    assert len(cache) == 200
