"""What an audit can fail with; every failure names the entry index or the proof."""

from __future__ import annotations

from app.errors import SignetError


class AuditFailed(SignetError):
    """The log does not hold: `index` is the first failing entry, if one is to blame."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
