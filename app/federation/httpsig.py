"""RFC 9421 HTTP Message Signatures (alg `ed25519`) and RFC 9530 Content-Digest (sha-256).

Every request between nodes is signed by its sender: `keyid` is the sender's origin, the
signature covers `@method`, `@target-uri` and, with a body, `content-digest`, and carries
`created`, `expires` (at most 5 minutes later) and a `nonce`. Keys come in as callables so this
module stays pure: `sign(base) -> signature` and a resolver `keyid -> verify(base, sig) | None`,
where `verify` raises (e.g. `app.errors.VerificationError`) when the signature is wrong.

Verification order, chosen so that unauthenticated input never touches state:
parse -> required components -> time window -> key lookup -> signature -> body digest ->
nonce (stored only once the request is proven authentic, so strangers cannot fill the cache).

Headers are given as a mapping or as (name, value) pairs; pass pairs (e.g. Starlette's
`request.headers.items()`) so that repeated fields are combined as RFC 9421 §2.1 says.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from app.errors import CryptoError
from app.federation import sfv
from app.federation.errors import (
    BadSignature,
    DigestMismatch,
    MalformedSignature,
    MissingComponent,
    MissingSignature,
    NonceCacheFull,
    ReplayedRequest,
    StaleRequest,
    UnknownKey,
)

__all__ = [
    "ALGORITHM",
    "MAX_VALIDITY_SECONDS",
    "Headers",
    "KeyResolver",
    "MemoryNonceCache",
    "NonceCache",
    "Signer",
    "VerifiedRequest",
    "Verifier",
    "content_digest",
    "sign_request",
    "signature_base",
    "verify_content_digest",
    "verify_request",
]

ALGORITHM = "ed25519"
MAX_VALIDITY_SECONDS = 300
"""`expires - created` may not exceed this (DESIGN: expires ≤ 5 minutes)."""

DEFAULT_REQUIRED_COMPONENTS: tuple[str, ...] = ("@method", "@target-uri")

_SIGNATURE_PARAMS = frozenset({"created", "expires", "nonce", "keyid", "alg", "tag"})
_INT_PARAMS = frozenset({"created", "expires"})
_DERIVED = frozenset({"@method", "@target-uri", "@authority", "@scheme", "@request-target"})
_DERIVED |= {"@path", "@query"}
_MAX_COMPONENTS = 32
_MAX_NONCE_LENGTH = 256
_MAX_KEYID_LENGTH = 255
_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda b: hashlib.sha256(b).digest(),
    "sha-512": lambda b: hashlib.sha512(b).digest(),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
Signer = Callable[[bytes], bytes]
Verifier = Callable[[bytes, bytes], None]
KeyResolver = Callable[[str], Verifier | None]
ParamValue = int | str


# --- Content-Digest (RFC 9530) ----------------------------------------------------------------


def content_digest(body: bytes) -> str:
    """The Content-Digest field value for `body`: `sha-256=:<base64>:`."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def verify_content_digest(header: str, body: bytes) -> None:
    """Raise `DigestMismatch` unless `header` carries a sha-256 (or sha-512) digest of `body`.

    Every supported algorithm present must match; unknown algorithms are ignored; at least one
    supported algorithm must be present.
    """
    try:
        members = sfv.parse_dictionary(header)
    except sfv.SfvError as exc:
        raise DigestMismatch(f"unparsable Content-Digest: {exc}") from None
    checked = 0
    for alg, member in members.items():
        digest = _DIGESTS.get(alg)
        if digest is None:
            continue
        if not isinstance(member, sfv.Item) or not isinstance(member.value, bytes):
            raise DigestMismatch(f"Content-Digest {alg} is not a byte sequence")
        if not hmac.compare_digest(member.value, digest(body)):
            raise DigestMismatch(f"body does not match Content-Digest {alg}")
        checked += 1
    if checked == 0:
        raise DigestMismatch("Content-Digest has no sha-256 or sha-512 digest")


# --- signature base (RFC 9421 §2.5) -----------------------------------------------------------


def _combine_headers(headers: Headers) -> dict[str, str]:
    """Lowercased name -> field values trimmed and joined with ", " (RFC 9421 §2.1)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    combined: dict[str, list[str]] = {}
    try:
        for name, value in pairs:
            if not isinstance(name, str) or not isinstance(value, str):
                raise MalformedSignature("header names and values must be text")
            combined.setdefault(name.lower(), []).append(value.strip(" \t"))
    except (TypeError, ValueError) as exc:
        raise MalformedSignature("headers must be (name, value) pairs") from exc
    return {name: ", ".join(values) for name, values in combined.items()}


def _check_value(name: str, value: str) -> str:
    # The base is US-ASCII, one component per line: a CR/LF or other control character in a
    # value could forge an extra line, so anything outside visible ASCII (and tab) is refused.
    if any(not (" " <= c <= "~" or c == "\t") for c in value):
        raise MalformedSignature(f"component {name!r} has a character not allowed in a base")
    return value


def _derived_value(name: str, method: str, target_uri: str) -> str:
    if name == "@method":
        return method
    if name == "@target-uri":
        return target_uri
    try:
        parts = urlsplit(target_uri)
        port = parts.port
    except ValueError as exc:
        raise MalformedSignature(f"target URI does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if name == "@scheme":
        return scheme
    if name == "@authority":
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if port is not None and port != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
        return host
    path = parts.path or "/"
    if name == "@path":
        return path
    if name == "@query":
        return "?" + parts.query
    if name == "@request-target":
        return path + ("?" + parts.query if parts.query else "")
    raise MissingComponent(f"unsupported derived component {name!r}")


def _validate_params(params: Mapping[str, object]) -> sfv.Params:
    out: list[tuple[str, sfv.BareItem]] = []
    for name, value in params.items():
        if name not in _SIGNATURE_PARAMS:
            raise MalformedSignature(f"unsupported signature parameter {name!r}")
        if name in _INT_PARAMS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MalformedSignature(f"parameter {name!r} must be a non-negative integer")
        elif not isinstance(value, str) or isinstance(value, sfv.Token):
            raise MalformedSignature(f"parameter {name!r} must be a string")
        out.append((name, value))
    return tuple(out)


def signature_base(
    method: str,
    target_uri: str,
    headers: Headers,
    components: Sequence[str],
    params: Mapping[str, ParamValue],
) -> bytes:
    """The RFC 9421 §2.5 signature base for a request.

    `components` are component names: derived (`@method`, `@target-uri`, `@authority`,
    `@scheme`, `@request-target`, `@path`, `@query`) or lowercase header field names.
    `params` are the signature parameters in the order they are to be serialised (`created`,
    `expires`, `nonce`, `keyid`, `alg`, `tag`). Raises `MissingComponent` when a covered field
    is absent and `MalformedSignature` for anything that cannot be put in a base.
    """
    return _build_base(method, target_uri, _combine_headers(headers), components, params)[0]


def _build_base(
    method: str,
    target_uri: str,
    fields: Mapping[str, str],
    components: Sequence[str],
    params: Mapping[str, object],
) -> tuple[bytes, str]:
    """The signature base and the serialised `@signature-params` value."""
    if len(components) > _MAX_COMPONENTS:
        raise MalformedSignature("too many covered components")
    if len(set(components)) != len(components):
        raise MalformedSignature("a component is covered twice")
    lines: list[str] = []
    items: list[sfv.Item] = []
    for name in components:
        if not isinstance(name, str) or not name or name != name.lower():
            raise MalformedSignature(f"component name {name!r} must be lowercase text")
        if name == "@signature-params":
            raise MalformedSignature("@signature-params cannot be covered")
        if name.startswith("@"):
            if name not in _DERIVED:
                raise MissingComponent(f"unsupported derived component {name!r}")
            value = _derived_value(name, method, target_uri)
        else:
            if name not in fields:
                raise MissingComponent(f"covered header {name!r} is absent")
            value = fields[name]
        try:
            ident = sfv.serialize_string(name)
        except sfv.SfvError as exc:
            raise MalformedSignature(f"component name {name!r}: {exc}") from None
        lines.append(f"{ident}: {_check_value(name, value)}\n")
        items.append(sfv.Item(name))
    try:
        sig_params = sfv.serialize_inner_list(sfv.InnerList(tuple(items), _validate_params(params)))
    except sfv.SfvError as exc:
        raise MalformedSignature(f"signature parameters: {exc}") from None
    lines.append(f'"@signature-params": {sig_params}')
    return "".join(lines).encode("ascii"), sig_params


# --- signing ----------------------------------------------------------------------------------


def sign_request(
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    *,
    keyid: str,
    sign: Signer,
    created: int,
    expires_in: int = MAX_VALIDITY_SECONDS,
    nonce: str | None = None,
    label: str = "sig1",
    components: Sequence[str] = (),
    tag: str | None = None,
) -> dict[str, str]:
    """Headers to add to a request: `Signature-Input`, `Signature` and, with a body,
    `Content-Digest`.

    Covers `@method`, `@target-uri`, `content-digest` when `body` is not empty, then any extra
    header `components` taken from `headers`. A fresh random nonce is used when none is given.
    """
    if not 0 < expires_in <= MAX_VALIDITY_SECONDS:
        raise ValueError(f"expires_in must be in 1..{MAX_VALIDITY_SECONDS} seconds")
    if not sfv.is_key(label):
        raise ValueError(f"label {label!r} is not a structured-field key")
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    out: dict[str, str] = {}
    covered = ["@method", "@target-uri"]
    fields = _combine_headers(headers)
    fields.pop("content-digest", None)  # ours replaces any the caller set
    if body:
        out["Content-Digest"] = fields["content-digest"] = content_digest(body)
        covered.append("content-digest")
    covered += [c for c in components if c not in covered]
    params: dict[str, ParamValue] = {
        "created": created,
        "expires": created + expires_in,
        "nonce": nonce,
        "keyid": keyid,
        "alg": ALGORITHM,
    }
    if tag is not None:
        params["tag"] = tag
    base, inner = _build_base(method, url, fields, covered, params)
    signature = sign(base)
    out["Signature-Input"] = f"{label}={inner}"
    out["Signature"] = f"{label}=:{base64.b64encode(signature).decode('ascii')}:"
    return out


# --- verifying --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """What a verified signature vouches for."""

    keyid: str
    created: int
    expires: int
    nonce: str
    label: str
    components: tuple[str, ...]


class NonceCache(Protocol):
    """Remembers (keyid, nonce) pairs until `expires_at` (Unix seconds)."""

    def check_and_store(self, keyid: str, nonce: str, expires_at: int) -> bool:
        """Store the pair; return False if it was already stored and has not expired."""
        ...


class MemoryNonceCache:
    """A thread-safe, bounded, in-process `NonceCache`.

    Entries live until `max(expires_at, stored_at + window_seconds)`, so a caller passing a
    short `expires_at` cannot open a replay gap inside the window. When `max_entries` live
    entries are held, new ones raise `NonceCacheFull`: forgetting a live nonce would allow a
    replay, so we fail closed. Only one process sees it; several workers need the DB-backed one.
    """

    def __init__(
        self,
        window_seconds: int,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_seconds < 0 or max_entries < 1:
            raise ValueError("window_seconds must be >= 0 and max_entries >= 1")
        self._window = window_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._until)

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now:
            until, keyid, nonce = heapq.heappop(heap)
            if self._until.get((keyid, nonce)) == until:
                del self._until[(keyid, nonce)]

    def check_and_store(self, keyid: str, nonce: str, expires_at: int) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            key = (keyid, nonce)
            if key in self._until:
                return False
            if len(self._until) >= self._max:
                raise NonceCacheFull("nonce cache is full; refusing rather than forgetting")
            until = float(max(expires_at, now + self._window))
            self._until[key] = until
            heapq.heappush(self._heap, (until, keyid, nonce))
            return True


def _parse_signature_headers(
    fields: Mapping[str, str], label: str | None, required: Sequence[str]
) -> tuple[str, sfv.InnerList, bytes]:
    raw_input = fields.get("signature-input")
    raw_sig = fields.get("signature")
    if raw_input is None or raw_sig is None:
        raise MissingSignature("request has no Signature and Signature-Input headers")
    try:
        inputs = sfv.parse_dictionary(raw_input)
        sigs = sfv.parse_dictionary(raw_sig)
    except sfv.SfvError as exc:
        raise MalformedSignature(f"signature headers do not parse: {exc}") from None
    if label is not None:
        candidates = [label] if label in inputs else []
    else:
        # Several signatures may be present (e.g. a proxy added one): take the first that
        # covers what we require. The chosen one is then checked in full.
        candidates = [
            k
            for k, v in inputs.items()
            if isinstance(v, sfv.InnerList) and set(required) <= {i.value for i in v.items}
        ] or list(inputs)[:1]
    if not candidates:
        raise MissingSignature(f"no signature labelled {label!r}")
    chosen = candidates[0]
    inner = inputs[chosen]
    sig_item = sigs.get(chosen)
    if not isinstance(inner, sfv.InnerList):
        raise MalformedSignature(f"Signature-Input {chosen!r} is not an inner list")
    if sig_item is None:
        raise MalformedSignature(f"Signature has no entry {chosen!r}")
    if not isinstance(sig_item, sfv.Item) or not isinstance(sig_item.value, bytes):
        raise MalformedSignature(f"Signature {chosen!r} is not a byte sequence")
    return chosen, inner, sig_item.value


def _components(inner: sfv.InnerList) -> list[str]:
    names: list[str] = []
    for item in inner.items:
        if isinstance(item.value, sfv.Token) or not isinstance(item.value, str):
            raise MalformedSignature("component identifiers must be strings")
        if item.params:
            # `sf`, `key`, `bs`, `req`, `name`: none is used by the protocol, so none is
            # accepted (RFC 9421 requires failing on parameters one does not support).
            raise MalformedSignature(f"component parameters are not supported ({item.value!r})")
        names.append(item.value)
    return names


def verify_request(
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    *,
    resolve_key: KeyResolver,
    now: int,
    max_skew: int,
    nonce_cache: NonceCache,
    required_components: Sequence[str] = DEFAULT_REQUIRED_COMPONENTS,
    label: str | None = None,
    expected_tag: str | None = None,
) -> VerifiedRequest:
    """Verify an inter-node request or raise a `SignatureRefused` subclass.

    `url` is the target URI as this node sees it (its public base URL plus path and query).
    `content-digest` is required, and checked against `body`, whenever `body` is not empty.
    Apart from `NonceCacheFull`, nothing is stored unless the request verifies.
    """
    if max_skew < 0:
        raise ValueError("max_skew must be >= 0")
    fields = _combine_headers(headers)
    required = list(required_components)
    if body and "content-digest" not in required:
        required.append("content-digest")
    chosen, inner, signature = _parse_signature_headers(fields, label, required)
    covered = _components(inner)
    missing = [c for c in required if c not in covered]
    if missing:
        raise MissingComponent(f"signature {chosen!r} does not cover {', '.join(missing)}")

    params = dict(inner.params)
    base, _ = _build_base(method, url, fields, covered, params)
    created, expires = params.get("created"), params.get("expires")
    nonce, keyid = params.get("nonce"), params.get("keyid")
    # _build_base validated the types; these checks narrow them and demand presence.
    if not isinstance(created, int) or not isinstance(expires, int):
        raise MalformedSignature("created and expires are required")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= _MAX_NONCE_LENGTH:
        raise MalformedSignature("a nonce of 1..256 characters is required")
    if not isinstance(keyid, str) or not 0 < len(keyid) <= _MAX_KEYID_LENGTH:
        raise MalformedSignature("a keyid of 1..255 characters is required")
    alg = params.get("alg")
    if alg is not None and alg != ALGORITHM:
        raise MalformedSignature(f"unsupported alg {alg!r}")
    if expected_tag is not None and params.get("tag") != expected_tag:
        raise MalformedSignature(f"tag must be {expected_tag!r}")

    if expires <= created or expires - created > MAX_VALIDITY_SECONDS:
        raise StaleRequest(f"validity window must be 1..{MAX_VALIDITY_SECONDS} s")
    if created > now + max_skew:
        raise StaleRequest("created lies in the future")
    if expires < now - max_skew:
        raise StaleRequest("signature has expired")

    verify = resolve_key(keyid)
    if verify is None:
        raise UnknownKey(f"no pinned key for keyid {keyid!r}")
    if len(signature) != 64:
        raise BadSignature("an Ed25519 signature is 64 bytes")
    try:
        verify(base, signature)
    except (CryptoError, ValueError) as exc:
        raise BadSignature(f"signature {chosen!r} by {keyid!r} does not verify") from exc

    if "content-digest" in covered:
        # The digest header itself is authentic now; a mismatch means the body was swapped.
        verify_content_digest(fields["content-digest"], body)

    # Keep the nonce until the latest moment this signature could still be accepted.
    if not nonce_cache.check_and_store(keyid, nonce, expires + max_skew):
        raise ReplayedRequest(f"nonce already used by {keyid!r}")
    return VerifiedRequest(keyid, created, expires, nonce, chosen, tuple(covered))
