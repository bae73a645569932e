"""Observation 3: a stranger cannot tell a node's peers from anyone else.

Before: a pinned keyid with a bad signature got 401, an unknown keyid 403, so trying origins
listed the node's peers. Now every request that does not verify gets one identical refusal,
and the node's log keeps the real reason. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from app.crypto.keys import NodeKey
from app.federation.httpsig import sign_request
from tests.federation_int.conftest import TNode, mesh

RECORDS = "/federation/v1/records?after=0&limit=10"


def test_unknown_keyid_and_bad_signature_are_refused_alike(
    make_nodes: Callable[..., list[TNode]], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_nodes("a.test", "b.test")
    mesh(a, b)
    url = a.url + RECORDS
    stranger = NodeKey.generate()

    def attempt(keyid: str, **kw: object) -> tuple[int, str, dict[str, str]]:
        headers = sign_request(
            "GET", url, {}, b"", keyid=keyid, sign=stranger.sign, created=int(time.time())
        )
        headers.update(kw)  # type: ignore[arg-type]
        r = a.client.get(url, headers=headers)
        assert r.headers["content-type"] == "application/problem+json"
        kept = {k: v for k, v in r.headers.items() if k in {"www-authenticate", "content-type"}}
        return r.status_code, r.text, kept

    with caplog.at_level(logging.WARNING, logger="signet.federation"):
        pinned = attempt("b.test")  # a peer's name, a stranger's key
        unknown = attempt("nobody.test")
        garbled = attempt("b.test", signature="sig1=:not base64!:")
    assert pinned == unknown == garbled
    assert pinned[0] == 401
    assert "b.test" not in pinned[1] and "nobody.test" not in pinned[1]
    # The operator still sees each real reason.
    reasons = [r.getMessage() for r in caplog.records if "refused federation" in r.getMessage()]
    assert len(reasons) == 3
    assert "nobody.test" in reasons[1] and reasons[0] != reasons[1] != reasons[2]
