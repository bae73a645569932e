"""A valid, unsigned signal record body for tests that build records by hand (hostile peers,
forged and replayed records, dedupe): every member a signal record must hold, with `fields`
replacing any of them."""

from __future__ import annotations

from typing import Any


def signal_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "signal",
        "v": 1,
        "id": "01body000000000000000000000",
        "version": 1,
        "type": "md5",
        "value": "0" * 32,
        "attrs": {},
        "categories": ["csam"],
        "indicators": [],
        "opinion": "positive",
        "confidence": 50,
        "reviewed": False,
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2030-01-01T00:00:00Z",
        "audience": {"tlp": "green", "peers": [], "hops": 1},
    }
    body.update(fields)
    return body
