"""/v1/match reads its bearer key without FastAPI's HTTPBearer (one dependency fewer on the
hottest route); what it accepts as a key must be exactly what HTTPBearer accepts."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from app.api.deps import _bearer, bearer_key

HEADERS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer sgn_abc",
    "bearer sgn_abc",
    "BEARER sgn_abc",
    "Bearer  sgn_abc",  # two spaces
    "Bearer sgn_abc extra",
    " Bearer sgn_abc",
    "Basic c2duOmFiYw==",
    "Token sgn_abc",
    "Bearersgn_abc",
    "Bearer\tsgn_abc",
]


def _request(value: str | None) -> Request:
    headers = [] if value is None else [(b"authorization", value.encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.parametrize("value", HEADERS)
def test_bearer_key_accepts_exactly_what_httpbearer_accepts(value: str | None) -> None:
    creds = asyncio.run(_bearer(_request(value)))
    assert bearer_key(_request(value)) == (creds.credentials if creds else None)
