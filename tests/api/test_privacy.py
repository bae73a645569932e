"""No raw identifier, API key or identifier key reaches the database or the logs."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from app.signals.identifiers import hash_identifier

RAW_EMAIL = "Jane.Doe+test@Example.org"
RAW_PHONE = "+44 7700 900123"
ID_KEY = b"identifier-key-for-tests-only-32b!"


def _database_text(node: Any, settings: Any) -> str:
    meta = MetaData()
    meta.reflect(node.db.engine)
    chunks = []
    with node.db.engine.connect() as conn:
        for table in meta.sorted_tables:
            chunks += [repr(tuple(row)) for row in conn.execute(select(table))]
    if settings.is_sqlite:
        for path in Path(settings.database_url.removeprefix("sqlite:///")).parent.glob(
            "signet.db*"
        ):
            chunks.append(path.read_bytes().decode("latin-1"))
    return "\n".join(chunks)


@pytest.fixture
def settings(make_settings: Any) -> Any:
    key = base64.b64encode(ID_KEY).decode()
    return make_settings(identifier_keys=f"fed={key}", log_level="debug")


def test_no_secret_or_raw_identifier_is_stored_or_logged(
    client: Any, node: Any, settings: Any, make_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = make_key("submit", "match", "read", "feedback")
    api_key = headers["Authorization"].split()[1]
    hashed = hash_identifier("email", RAW_EMAIL, ID_KEY, "fed")
    body = {
        "signals": [
            {"type": "email", "value": hashed, "key_id": "fed", "categories": ["grooming"]},
            {"type": "email", "value": RAW_EMAIL, "key_id": "fed", "categories": ["grooming"]},
            {"type": "phone", "value": RAW_PHONE, "key_id": "fed", "categories": ["grooming"]},
        ]
    }
    r = client.post("/v1/signals", headers=headers, json=body)
    assert [i["status"] for i in r.json()["items"]] == ["created", "rejected", "rejected"]
    assert RAW_EMAIL not in r.text and RAW_PHONE not in r.text
    r = client.post(
        "/v1/match",
        headers=headers,
        json={
            "queries": [
                {"type": "email", "value": hashed, "key_id": "fed"},
                {"type": "text", "value": f"write to {RAW_EMAIL} now"},
            ]
        },
    )
    assert len(r.json()["results"][0]["matches"]) == 1
    client.post("/v1/signals", json=body, headers={"Authorization": "Bearer " + api_key + "x"})

    stored = _database_text(node, settings)
    logged = caplog.text
    key_b64 = base64.b64encode(ID_KEY).decode()
    for secret in (RAW_EMAIL, RAW_EMAIL.lower(), RAW_PHONE, "7700900123", api_key, key_b64):
        assert secret not in stored, f"{secret!r} reached the database"
        assert secret not in logged, f"{secret!r} reached the logs"
    assert ID_KEY.decode() not in stored
