"""RFC 3339 timestamps as they appear in signed records: UTC, whole seconds, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s: str) -> datetime:
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("timestamp without a timezone")
    return dt.astimezone(UTC)
