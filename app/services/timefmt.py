"""RFC 3339 timestamps as they appear in signed records: UTC, whole seconds, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(dt: datetime) -> str:
    global _last
    last = _last
    if dt == last[0]:  # a batch's records and entries share one time: formatted once
        return last[1]
    d = dt.astimezone(UTC)
    if d.year >= 1000:  # three per signal published: formatted directly, ~3x strftime's speed
        out = f"{d.year}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"
    else:
        out = d.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    _last = (dt, out)  # one tuple, replaced whole: safe to read from any thread
    return out


_last: tuple[datetime | None, str] = (None, "")


def parse_rfc3339(s: str) -> datetime:
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("timestamp without a timezone")
    return dt.astimezone(UTC)
