"""Signal types: one module per family, each validating a value into its canonical form.

    media.py        pdq, md5, sha256, photodna
    video.py        vpdq (frame PDQ hashes of a video, Meta's vPDQ text form)
    web.py          url, domain
    text.py         keyword, text_tlsh
    identifiers.py  email, phone, username, payment (keyed hashes only)

`canonicalize(type, value, ...)` is the single entry point; every refusal is an
`InvalidSignal(field, reason)`. The canonical forms are tabulated in `docs/signal-types.md`.
"""

from __future__ import annotations

from dataclasses import replace

from app.errors import InvalidSignal
from app.signals.domains import PSL_VERSION, is_public_suffix, registrable_domain
from app.signals.types.base import Canonical
from app.signals.types.identifiers import canonical_identifier
from app.signals.types.media import (
    canonical_md5,
    canonical_pdq,
    canonical_photodna,
    canonical_sha256,
)
from app.signals.types.text import canonical_keyword, canonical_text_tlsh, tlsh_distance
from app.signals.types.video import canonical_vpdq
from app.signals.types.web import canonical_domain, canonical_url, url_canonical, url_hash
from app.signals.vocab import IDENTIFIER_TYPES, SignalType

__all__ = ["Canonical", "canonicalize", "tlsh_distance", "url_canonical", "url_hash"]


_TYPES = {t.value: t for t in SignalType}


def canonicalize(
    type: str,
    value: object,
    *,
    quality: int | None = None,
    allow_low_quality: bool = False,
    key_id: str | None = None,
    domain: str | None = None,
    subdomains: bool | None = None,
) -> Canonical:
    """Validate `value` as a signal of `type` and return its canonical form.

    `quality` is required for pdq; `key_id` for identifier types; `domain` only with a
    pre-hashed url (64 hex), where it is required; `subdomains` (domain only) whether the
    signal also covers its subdomains (recorded in `extra`). url and domain values get their
    registrable domain (Public Suffix List) in `extra["registrable"]` when they have one.
    Raises InvalidSignal(field, reason).
    """
    # A dict lookup first: `SignalType(type)` (Enum's lookup) is ten times slower, and every
    # signal submitted or received comes through here. Anything else takes Enum's own path.
    t = _TYPES.get(type) if isinstance(type, str) else None
    if t is None:
        try:
            t = SignalType(type)
        except ValueError:
            shown = type[:32] if isinstance(type, str) else repr(type)[:32]
            known = ", ".join(t.value for t in SignalType)
            raise InvalidSignal("type", f"unknown signal type '{shown}'; known: {known}") from None
    if t is SignalType.PDQ:
        return canonical_pdq(value, quality, allow_low_quality=allow_low_quality)
    if quality is not None:
        raise InvalidSignal("quality", f"only pdq signals carry a quality, not {t.value}")
    if t is SignalType.VPDQ:  # each frame line carries its own quality
        return canonical_vpdq(value, allow_low_quality=allow_low_quality)
    if t in IDENTIFIER_TYPES:
        return canonical_identifier(t, value, key_id)
    if key_id is not None:
        raise InvalidSignal("key_id", f"only identifier signals carry a key_id, not {t.value}")
    if subdomains is not None and t is not SignalType.DOMAIN:
        raise InvalidSignal("subdomains", f"only domain signals cover subdomains, not {t.value}")
    if t is SignalType.URL:
        return _with_registrable(canonical_url(value, domain=domain), "domain")
    if domain is not None:
        raise InvalidSignal("domain", f"only url signals carry a domain, not {t.value}")
    if t is SignalType.MD5:
        return canonical_md5(value)
    if t is SignalType.SHA256:
        return canonical_sha256(value)
    if t is SignalType.PHOTODNA:
        return canonical_photodna(value)
    if t is SignalType.DOMAIN:
        canon = canonical_domain(value)
        if subdomains and is_public_suffix(canon.value):
            raise InvalidSignal(
                "subdomains",
                f"{canon.value} is a public suffix (Public Suffix List {PSL_VERSION}): covering "
                "its subdomains would cover every site under it; send subdomains: false",
            )
        canon = _with_registrable(canon, None)
        if subdomains is not None:
            canon = replace(canon, extra={**canon.extra, "subdomains": subdomains})
        return canon
    if t is SignalType.KEYWORD:
        return canonical_keyword(value)
    return canonical_text_tlsh(value)


def _with_registrable(canon: Canonical, host_key: str | None) -> Canonical:
    """`canon` with the registrable domain of its host (the value, or `extra[host_key]`)."""
    host = canon.extra.get(host_key) if host_key else canon.value
    reg = registrable_domain(host) if isinstance(host, str) else None
    return replace(canon, extra={**canon.extra, "registrable": reg}) if reg else canon
