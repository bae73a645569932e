"""Synthetic signals for the feed tests: one of every audience, deterministic values."""

from __future__ import annotations

import hashlib
from typing import Any

AUDIENCES: list[dict[str, Any]] = [
    {"tlp": "clear"},
    {"tlp": "green"},
    {"tlp": "amber", "peers": ["peer.example"]},
    {"tlp": "red"},
]


def hexof(label: str, n: int = 64) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:n]


def signal(kind: str, label: str, tlp: str, **extra: Any) -> dict[str, Any]:
    audience = next(a for a in AUDIENCES if a["tlp"] == tlp)
    base: dict[str, Any] = {"categories": ["ncii"], "audience": audience}
    if kind == "pdq":
        base |= {"type": "pdq", "value": hexof(label), "quality": 90}
    elif kind == "md5":
        base |= {"type": "md5", "value": hexof(label, 32)}
    elif kind == "sha256":
        base |= {"type": "sha256", "value": hexof(label)}
    elif kind == "domain":
        base |= {"type": "domain", "value": f"{label}.example"}
    elif kind == "keyword":
        base |= {"type": "keyword", "value": f"codeword {label}"}
    elif kind == "email":
        base |= {"type": "email", "value": hexof(label), "key_id": "k1"}
    else:
        raise ValueError(kind)
    base.update(extra)
    return base


def submit(client: Any, auth: dict[str, str], *signals: dict[str, Any]) -> list[str]:
    resp = client.post("/v1/signals", json={"signals": list(signals)}, headers=auth)
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert all(i["status"] == "created" for i in items), items
    return [i["id"] for i in items]


def one_of_each(client: Any, auth: dict[str, str], tag: str = "") -> dict[str, list[str]]:
    """Every feedable type at every TLP level; returns the ids by TLP."""
    ids: dict[str, list[str]] = {}
    for a in AUDIENCES:
        tlp = a["tlp"]
        kinds = ["pdq", "md5", "sha256", "domain", "keyword", "email"]
        ids[tlp] = submit(client, auth, *(signal(k, f"{tag}{tlp}-{k}", tlp) for k in kinds))
    return ids
