from __future__ import annotations

import base64

import pytest

from app.errors import ConfigError
from app.settings import load_settings


def test_defaults_use_sqlite_under_data(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.database_url.startswith("sqlite:///")
    assert s.public_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SIGNET_ORIGIN", "Not An Origin", "SIGNET_ORIGIN"),
        ("SIGNET_PORT", "99999", "SIGNET_PORT"),
        ("SIGNET_DATABASE_URL", "mysql://x", "SIGNET_DATABASE_URL must be"),
        ("SIGNET_IDENTIFIER_KEYS", "fed=short", "SIGNET_IDENTIFIER_KEYS"),
        ("SIGNET_MAX_BATCH", "0", "SIGNET_MAX_BATCH"),
    ],
)
def test_unusable_settings_are_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


def test_identifier_keys_parse_and_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(b"k" * 32).decode()
    monkeypatch.setenv("SIGNET_IDENTIFIER_KEYS", f"fed-2026={key}")
    s = load_settings()
    assert s.identifier_keys["fed-2026"].get_secret_value() == b"k" * 32
    assert key not in repr(s) and "kkkk" not in repr(s)
