"""Web types: `url` and `domain` (table in docs/signal-types.md).

- `domain`: lowercase ASCII host name with IDNA A-labels (punycode) and no trailing dot: UTS #46
  mapping (non-transitional), then each non-ASCII label to its A-label (IDNA 2008, the `idna`
  package); existing `xn--` labels must decode and re-encode to themselves. Labels are 1-63
  letters, digits, `-` or `_` (seen in the wild), not starting or ending with `-`; at most 253
  characters; at least two labels; a numeric top label is refused (an IP is not a domain).
- `url`: the stored value is the SHA-256 (64 lowercase hex) of the canonical URL's ASCII bytes,
  with `extra["domain"]` the canonical host (the full host: no public-suffix list is used).
  Submitters send the raw URL (hashed here, not kept) or the pre-hashed form: the 64-hex
  `url_hash` plus `domain`. Clients compute it with `url_hash`.

The canonical URL, which every federation member must reproduce bit for bit to hash alike:

1. surrounding whitespace removed; ASCII control characters refused; at most 8192 characters;
2. scheme lowercased, only `http` and `https`;
3. user info (`user:pass@`) dropped - never part of a shared signal, and a common disguise;
4. host: percent-decoded, then canonicalised as a `domain` above; IPv4 dotted quads and bracketed
   IPv6 literals are kept in their standard text form (IPv6 compressed, in brackets);
5. port dropped when it is the scheme's default (80, 443), otherwise kept as a decimal number;
6. path, query: every percent-encoding of an unreserved character (`A-Z a-z 0-9 - . _ ~`) decoded,
   every other percent-encoding upper-cased, a `%` not followed by two hex digits encoded as
   `%25`, characters outside RFC 3986 (space, non-ASCII as UTF-8, `"<>\\^`{|}`) percent-encoded;
7. path dot-segments removed (RFC 3986 section 5.2.4); an empty path becomes `/`; repeated slashes
   are kept;
8. query kept in its order (no sorting; `+` kept as is); an empty query (`?` alone) dropped;
9. fragment dropped.

`url_hash(url)` is `sha256(url_canonical(url).encode("ascii")).hexdigest()`.

Canonical forms are versioned. The steps above are applied to the parts of the URL as a
*browser* reads them (form 2, `URL_CANON = "2"`, recorded as `attrs["canon"]` on new signals):
the WHATWG URL Standard parser (ada-url) finds scheme, host, port, path and query, so
`http://a.example\\@b.example/x` is host a.example (a backslash is a slash in http URLs) and
IPv4 shorthand (`http://127.1/`, `http://0x7f.1/`) is the dotted quad. Form 1 split the URL with
Python's RFC 3986 `urlsplit` (host b.example there; shorthand refused). Signals published under
form 1 carry no `canon` attribute; a `url` match query is looked up under both forms, so they keep
matching until they expire (docs/signal-types.md).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import SplitResult, unquote, urlsplit

import ada_url
import idna

from app.errors import InvalidSignal
from app.signals.types.base import Canonical, require_hex, require_str
from app.signals.vocab import SignalType

__all__ = [
    "URL_CANON",
    "canonical_domain",
    "canonical_url",
    "domain_canonical",
    "url_canonical",
    "url_canonical_v1",
    "url_domain",
    "url_hash",
    "url_hash_v1",
]

_MAX_URL = 8192
# The canonical form new url signals are hashed under, recorded in their attrs as `canon`.
URL_CANON = "2"
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_PATH_SAFE = _UNRESERVED | _SUB_DELIMS | frozenset(":@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def domain_canonical(host: str, field: str = "value") -> str:
    """Canonical form of a host name (see the module table); raises InvalidSignal(field)."""
    s = host.strip()
    if not s:
        raise InvalidSignal(field, "empty domain")
    if "/" in s or ":" in s:
        raise InvalidSignal(
            field, "a domain is a bare host name like 'example.org' (no scheme, port or path)"
        )
    try:
        mapped = idna.uts46_remap(s, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidSignal(field, f"not a valid internationalised domain name: {exc}") from None
    if mapped.endswith("."):
        mapped = mapped[:-1]
    labels = mapped.split(".")
    out: list[str] = []
    for label in labels:
        out.append(_label_canonical(label, field))
    if len(out) < 2:
        raise InvalidSignal(field, "a domain needs at least two labels, like 'example.org'")
    if out[-1].isdigit():
        raise InvalidSignal(field, "the top-level label is numeric: an IP address is not a domain")
    result = ".".join(out)
    if len(result) > 253:
        raise InvalidSignal(field, "a domain is at most 253 characters")
    return result


def _label_canonical(label: str, field: str) -> str:
    if not label:
        raise InvalidSignal(field, "empty label in domain (two dots in a row, or a leading dot)")
    if label.isascii():
        label = label.lower()
        if label.startswith("xn--"):
            # Check the punycode decodes to a valid U-label and encodes back to itself.
            try:
                if idna.alabel(idna.ulabel(label)).decode("ascii") != label:
                    raise idna.IDNAError("not in canonical form")
            except (idna.IDNAError, UnicodeError) as exc:
                raise InvalidSignal(field, f"invalid punycode label: {exc}") from None
    else:
        try:
            label = idna.alabel(label).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidSignal(field, f"label not allowed in a domain name: {exc}") from None
    if not _LABEL.fullmatch(label):
        raise InvalidSignal(
            field,
            "each domain label is 1-63 letters, digits, '-' or '_', "
            "not starting or ending with '-'",
        )
    return label


def canonical_domain(value: object) -> Canonical:
    return Canonical(SignalType.DOMAIN, domain_canonical(require_str(value, max_len=1024)))


def _normalise_pct(text: str, safe: frozenset[str]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            if i + 2 < n and text[i + 1] in _HEXDIGITS and text[i + 2] in _HEXDIGITS:
                byte = int(text[i + 1 : i + 3], 16)
                ch = chr(byte)
                out.append(ch if ch in _UNRESERVED else f"%{byte:02X}")
                i += 3
                continue
            out.append("%25")
        elif c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 §5.2.4, on an absolute path.
    inp, out = path, ""
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = "/" + inp[3:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = "/" + inp[4:]
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp == "/..":
            inp = "/"
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp in (".", ".."):
            inp = ""
        else:
            j = inp.find("/", 1)
            seg, inp = (inp, "") if j == -1 else (inp[:j], inp[j:])
            out += seg
    return out


def _host_canonical(parts: SplitResult) -> str:
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):
        literal = netloc[1 : netloc.find("]")] if "]" in netloc else ""
        try:
            return f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:
            raise InvalidSignal("value", "invalid IPv6 literal in URL host") from None
    try:
        host = unquote(parts.hostname or "", errors="strict")
    except UnicodeDecodeError:
        raise InvalidSignal(
            "value", "URL host has percent-encoded bytes that are not UTF-8"
        ) from None
    if not host:
        raise InvalidSignal("value", "URL has no host")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return domain_canonical(host)


def url_canonical_v1(url: str) -> str:
    """Canonical form 1 (RFC 3986 parsing by urllib; see the module docstring).

    Kept only so that signals hashed under it keep matching: a `url` query is looked up under
    both forms. It reads `http://a.example\\@b.example/` as host b.example, where a browser goes
    to a.example, and refuses IPv4 shorthand such as `http://127.1/`; form 2 fixes both."""
    s = require_str(url, max_len=_MAX_URL)
    if _CONTROL.search(s):
        raise InvalidSignal("value", "URL contains control characters (tab, newline, ...)")
    try:
        parts = urlsplit(s)
        port = parts.port
    except ValueError as exc:
        raise InvalidSignal("value", f"not a parseable URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        hint = " (include the scheme, e.g. 'https://')" if not parts.scheme else ""
        raise InvalidSignal("value", f"only http and https URLs are accepted{hint}")
    if not parts.netloc:
        raise InvalidSignal("value", "URL has no host")
    host = _host_canonical(parts)
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_normalise_pct(parts.path, _PATH_SAFE)) or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = _normalise_pct(parts.query, _QUERY_SAFE)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def url_canonical(url: str) -> str:
    """Canonical form 2 of an http(s) URL: parsed as a browser parses it (WHATWG URL Standard,
    via ada-url), then the rules of form 1 applied to the parts; raises InvalidSignal."""
    s = require_str(url, max_len=_MAX_URL).strip()
    if _CONTROL.search(s):
        raise InvalidSignal("value", "URL contains control characters (tab, newline, ...)")
    try:
        parsed = ada_url.URL(s)
    except ValueError:
        hint = " (include the scheme, e.g. 'https://')" if "://" not in s else ""
        raise InvalidSignal("value", f"not a parseable URL{hint}") from None
    scheme = parsed.protocol.rstrip(":")
    if scheme not in _DEFAULT_PORTS:
        raise InvalidSignal("value", "only http and https URLs are accepted")
    host = parsed.hostname
    if not host:
        raise InvalidSignal("value", "URL has no host")
    if host.startswith("["):
        host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    else:
        try:
            host = str(ipaddress.IPv4Address(host))  # the parser already expanded shorthand
        except ValueError:
            host = domain_canonical(host)  # our label rules on the browser's ASCII host
    port = parsed.port  # "" when absent or the scheme's default
    netloc = f"{host}:{port}" if port else host
    path = _remove_dot_segments(_normalise_pct(parsed.pathname, _PATH_SAFE)) or "/"
    query = _normalise_pct(parsed.search[1:], _QUERY_SAFE)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def url_hash(url: str) -> str:
    """SHA-256 (64 lowercase hex) of the canonical URL: the stored value of a `url` signal."""
    return hashlib.sha256(url_canonical(url).encode("ascii")).hexdigest()


def url_domain(url: str) -> str:
    """The canonical host of a URL, as carried in `extra["domain"]`."""
    return _host_of(url_canonical(url))


def _host_of(canonical: str) -> str:
    host = urlsplit(canonical).hostname or ""
    return f"[{host}]" if ":" in host else host


def canonical_url(value: object, *, domain: object = None) -> Canonical:
    """A raw URL, or its `url_hash` with `domain` (the pre-hashed form).

    Raw URLs are hashed here and not kept. When both a raw URL and `domain` are given, they must
    agree.
    """
    s = require_str(value, max_len=_MAX_URL)
    if re.fullmatch(r"[0-9a-fA-F]{64}", s):
        if domain is None:
            raise InvalidSignal(
                "domain", "required with a pre-hashed URL: the canonical host of the URL"
            )
        return Canonical(
            SignalType.URL,
            require_hex(s, 64, "a URL hash"),
            {"domain": _extra_domain(domain)},
        )
    canonical = url_canonical(s)
    host = _host_of(canonical)
    if domain is not None and _extra_domain(domain) != host:
        raise InvalidSignal("domain", "does not match the host of the URL; leave it out")
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    return Canonical(SignalType.URL, digest, {"domain": host, "canon": URL_CANON})


def url_hash_v1(url: str) -> str | None:
    """The form 1 hash of a raw URL, or None where form 1 cannot read it."""
    try:
        return hashlib.sha256(url_canonical_v1(url).encode("ascii")).hexdigest()
    except InvalidSignal:
        return None


def _extra_domain(domain: object) -> str:
    s = require_str(domain, "domain", max_len=1024)
    if s.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(s.strip('[]')).compressed}]"
        except ValueError:
            raise InvalidSignal("domain", "invalid IPv6 literal") from None
    try:
        return str(ipaddress.IPv4Address(s))
    except ValueError:
        return domain_canonical(s, "domain")
