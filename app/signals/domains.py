"""Registrable domains from the Public Suffix List, for whole-domain matching.

The list is the snapshot shipped inside the `publicsuffixlist` package (its version carries the
list's date, `PSL_VERSION`); nothing is fetched at run time. Private suffixes are included, so
`someone.github.io` is its own registrable domain and a signal on it never covers
`other.github.io`.

- `registrable_domain("a.b.example.co.uk")` -> `example.co.uk`; None for a public suffix itself
  (`co.uk`, `github.io`) or an IP literal.
- `covering_domains(host)`: the host and each parent down to its registrable domain, nearest
  first: the domain signals (with subdomains included) that a query for `host` can hit.
"""

from __future__ import annotations

import importlib.metadata
from typing import Final

from publicsuffixlist import PublicSuffixList

__all__ = ["PSL_VERSION", "covering_domains", "is_public_suffix", "registrable_domain"]

PSL_VERSION: Final = importlib.metadata.version("publicsuffixlist")
_PSL: Final = PublicSuffixList()  # the bundled list; no download


def _is_ip(host: str) -> bool:
    return host.startswith("[") or host.replace(".", "").isdigit()


def registrable_domain(host: str) -> str | None:
    if not host or _is_ip(host):
        return None
    reg: str | None = _PSL.privatesuffix(host.lower().rstrip("."))
    return reg


def is_public_suffix(host: str) -> bool:
    return not _is_ip(host) and registrable_domain(host) is None


def covering_domains(host: str) -> list[str]:
    reg = registrable_domain(host)
    if reg is None:
        return []
    labels = host.lower().rstrip(".").split(".")
    stop = len(labels) - reg.count(".")  # labels of the registrable domain, from the left
    return [".".join(labels[i:]) for i in range(stop)]
