"""The committed OpenAPI contract is what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

from app.openapi import render

CONTRACT = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def test_openapi_contract_is_current() -> None:
    assert CONTRACT.exists(), "run `make openapi`"
    current = render()
    committed = CONTRACT.read_text()
    assert json.loads(committed) == json.loads(current), "openapi.json is stale: run `make openapi`"
