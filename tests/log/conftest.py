"""Fixtures for the exchange-log tests: a node with some history, and an auditor's key."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest


def md5() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def audit_auth(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    return make_key("audit")


@pytest.fixture
def submit(client: Any, auth: dict[str, str]) -> Callable[..., list[str]]:
    """Publish md5 signals (one per tlp given); returns their ids."""

    def run(*tlps: str) -> list[str]:
        items = [
            {
                "type": "md5",
                "value": md5(),
                "categories": ["csam"],
                "audience": {"tlp": t, "peers": ["peer.example"] if t == "amber" else []},
            }
            for t in tlps
        ]
        r = client.post("/v1/signals", headers=auth, json={"signals": items})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["created"] == len(tlps), body
        return [i["id"] for i in body["items"]]

    return run


@pytest.fixture
def history(
    client: Any, auth: dict[str, str], submit: Callable[..., list[str]]
) -> dict[str, list[str]]:
    """Signals of every TLP, a retraction and a feedback: entries of every kind we write."""
    ids = submit("clear", "green", "amber", "red", "clear")
    r = client.post(f"/v1/signals/{ids[0]}/retract", headers=auth, json={"reason": "mistake"})
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/signals/{ids[3]}/retract", headers=auth, json={"reason": "mistake"})
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/feedback", headers=auth, json={"signal": ids[1], "verdict": "true_positive"}
    )
    assert r.status_code == 200, r.text
    return {"ids": ids}
