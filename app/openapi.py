"""Print the OpenAPI contract: `python -m app.openapi > openapi/openapi.json`."""

from __future__ import annotations

import json
from typing import Any

from app.main import create_app
from app.settings import load_settings


def contract() -> dict[str, Any]:
    return create_app(load_settings(background=False)).openapi()


def render() -> str:
    return json.dumps(contract(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
