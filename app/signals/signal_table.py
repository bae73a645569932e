"""What a match answers about each indexed signal, held as columns rather than Python objects.

A worker's match index used to keep every active signal as a frozen dataclass with a `public`
dict (id, origin, type, categories, ...): about 1.7 KB of Python objects per signal, 1.66 GB
per worker at 1M signals. Most of those fields are shared by many signals (a node's own PDQ list
is one origin, a handful of category sets, one opinion, ...), so a row here is only:

- `valid_until`: int64 microseconds since the epoch (exact for what the database gives; a row
  not in the table reads as the smallest int64, so it is never live);
- `profile`: int32, the row's interned `Profile` (every shared field; -1: no row);
- `uid`: 26 bytes (the node's ids are 26 base32 characters); a longer or non-ASCII uid (a
  peer's) goes to a small dict instead.

38 bytes per row, in numpy arrays indexed by row id (the database's dense autoincrement ids;
the arrays double when a larger id arrives). A hit's public answer is built on demand
(`public`), and a feedback change moves a row to another profile (`update`).

Not thread-safe by itself: `MatchIndex` guards it with its lock (one writer, many readers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
ABSENT = np.iinfo(np.int64).min  # valid_until of a row that is not in the table
UID_BYTES = 26  # new_id(): 128 bits as 26 base32 digits
_MIN_CAPACITY = 1024


class Profile(NamedTuple):
    """The fields many signals share. `subdomains`: a domain signal covering its subdomains
    (kept here so removing the row knows it without a per-row field)."""

    origin: str | None
    type: str | None
    categories: tuple[str, ...]
    indicators: tuple[str, ...]
    opinion: str | None
    confidence: int | None
    reviewed: bool | None
    feedback_status: str | None
    subdomains: bool


# The public answer's fields that live in the profile (the rest: "id", "valid_until").
_SHARED = ("origin", "type", "opinion", "confidence", "reviewed", "feedback_status")


def to_micros(when: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    return (when - EPOCH) // _US


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class SignalTable:
    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        capacity = max(capacity, _MIN_CAPACITY)
        self._valid = np.full(capacity, ABSENT, dtype=np.int64)
        self._profile = np.full(capacity, -1, dtype=np.int32)
        self._uid = np.zeros(capacity, dtype=f"S{UID_BYTES}")
        self._long_uids: dict[int, str] = {}  # uids that do not fit `_uid`
        self._profiles: list[Profile] = []
        self._profile_ids: dict[Profile, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def profiles(self) -> int:
        return len(self._profiles)

    def nbytes(self) -> int:
        """The columns' bytes (not the profiles or long uids, which are few)."""
        return self._valid.nbytes + self._profile.nbytes + self._uid.nbytes

    # --- profiles ------------------------------------------------------------------------

    def intern(self, profile: Profile) -> int:
        pid = self._profile_ids.get(profile)
        if pid is None:
            pid = self._profile_ids[profile] = len(self._profiles)
            self._profiles.append(profile)
        return pid

    def intern_public(
        self, public: Mapping[str, Any], type_: str | None = None, subdomains: bool = False
    ) -> int:
        """The profile id of a public answer (as `index_sync` builds it)."""
        return self.intern(
            Profile(
                public.get("origin"),
                public.get("type", type_),
                tuple(public.get("categories") or ()),
                tuple(public.get("indicators") or ()),
                public.get("opinion"),
                public.get("confidence"),
                public.get("reviewed"),
                public.get("feedback_status"),
                subdomains,
            )
        )

    # --- rows ----------------------------------------------------------------------------

    def reserve(self, top: int, *, exact: bool = False) -> None:
        """Room for row ids up to `top`: at least double the size, or (`exact`) just that (a
        start-up load that knows the largest row id, so it neither copies nor over-allocates)."""
        size = self._valid.size
        if top < size:
            return
        new = top + 1 if exact else max(top + 1, 2 * size)
        valid = np.full(new, ABSENT, dtype=np.int64)
        valid[:size] = self._valid
        profile = np.full(new, -1, dtype=np.int32)
        profile[:size] = self._profile
        uid = np.zeros(new, dtype=self._uid.dtype)
        uid[:size] = self._uid
        self._valid, self._profile, self._uid = valid, profile, uid

    def put(self, row_id: int, uid: str, valid_until_us: int, profile: int) -> None:
        """Add or replace a row."""
        if row_id < 0:
            raise ValueError("row ids are not negative")
        self.reserve(row_id)
        if self._profile[row_id] < 0:
            self._count += 1
        self._valid[row_id] = valid_until_us
        self._profile[row_id] = profile
        self._long_uids.pop(row_id, None)
        if _fits(uid):
            self._uid[row_id] = uid.encode("ascii")
        else:
            self._uid[row_id] = b""
            self._long_uids[row_id] = uid

    def put_many(
        self,
        row_ids: np.ndarray,
        uids: Sequence[str],
        valid_until_us: np.ndarray,
        profiles: np.ndarray,
    ) -> None:
        """Add or replace rows in bulk (distinct row ids)."""
        if not row_ids.size:
            return
        if not all(_fits(u) for u in uids):
            for r, u, v, p in zip(
                row_ids.tolist(), uids, valid_until_us.tolist(), profiles.tolist(), strict=True
            ):
                self.put(r, u, v, p)
            return
        if int(row_ids.min()) < 0:
            raise ValueError("row ids are not negative")
        self.reserve(int(row_ids.max()))
        self._count += np.unique(row_ids[self._profile[row_ids] < 0]).size
        self._valid[row_ids] = valid_until_us
        self._profile[row_ids] = profiles
        self._uid[row_ids] = np.array(uids, dtype=self._uid.dtype)
        if self._long_uids:
            for r in row_ids.tolist():
                self._long_uids.pop(r, None)

    def remove(self, row_id: int) -> Profile | None:
        """Remove a row; returns its profile (None: there was none)."""
        profile = self.profile(row_id)
        if profile is None:
            return None
        self._valid[row_id] = ABSENT
        self._profile[row_id] = -1
        self._uid[row_id] = b""
        self._long_uids.pop(row_id, None)
        self._count -= 1
        return profile

    def profile(self, row_id: int) -> Profile | None:
        if not 0 <= row_id < self._profile.size:
            return None
        pid = int(self._profile[row_id])
        return self._profiles[pid] if pid >= 0 else None

    def uid(self, row_id: int) -> str | None:
        if self.profile(row_id) is None:
            return None
        return self._long_uids.get(row_id) or self._uid[row_id].decode("ascii")

    def live(self, row_id: int, now: float) -> bool:
        """In the table and not expired at `now` (POSIX seconds)."""
        return 0 <= row_id < self._valid.size and int(self._valid[row_id]) > now * 1e6

    def live_mask(self, row_ids: np.ndarray, now: float) -> np.ndarray:
        """`live` for many row ids at once."""
        inside = (row_ids >= 0) & (row_ids < self._valid.size)
        out = np.zeros(row_ids.shape, dtype=bool)
        out[inside] = self._valid[row_ids[inside]] > now * 1e6
        return out

    def public(self, row_id: int) -> dict[str, Any] | None:
        """What a hit answers about the row (a new dict), or None if it is not in the table."""
        if not 0 <= row_id < self._profile.size:
            return None
        pid = int(self._profile[row_id])
        if pid < 0:
            return None
        p = self._profiles[pid]
        return {
            "id": self._long_uids.get(row_id) or self._uid[row_id].decode("ascii"),
            "origin": p.origin,
            "type": p.type,
            "categories": list(p.categories),
            "indicators": list(p.indicators),
            "opinion": p.opinion,
            "confidence": p.confidence,
            "reviewed": p.reviewed,
            "valid_until": from_micros(int(self._valid[row_id])),
            "feedback_status": p.feedback_status,
        }

    def update(self, row_id: int, **changes: Any) -> None:
        """Change fields of the public answer of a row (e.g. its feedback status): the row
        moves to the profile with those fields. A row not in the table is left alone."""
        p = self.profile(row_id)
        if p is None:
            return
        if "id" in changes:
            self.put(
                row_id, changes.pop("id"), int(self._valid[row_id]), int(self._profile[row_id])
            )
        if "valid_until" in changes:
            self._valid[row_id] = to_micros(changes.pop("valid_until"))
        unknown = set(changes) - {*_SHARED, "categories", "indicators"}
        if unknown:
            raise ValueError(f"not fields of a match answer: {sorted(unknown)}")
        for name in ("categories", "indicators"):
            if name in changes:
                changes[name] = tuple(changes[name])
        if changes:
            self._profile[row_id] = self.intern(p._replace(**changes))


def _fits(uid: str) -> bool:
    return len(uid) <= UID_BYTES and uid.isascii() and not uid.endswith("\0")
