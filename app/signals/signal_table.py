"""What a match answers about each indexed signal, held as columns rather than Python objects.

A worker's match index used to keep every active signal as a frozen dataclass with a `public`
dict (id, origin, type, categories, ...): about 1.7 KB of Python objects per signal, 1.66 GB
per worker at 1M signals. Most of those fields are shared by many signals (a node's own PDQ list
is one origin, a handful of category sets, one opinion, ...), so a row here is only:

- `valid_until`: int64 microseconds since the epoch (exact for what the database gives; a row
  not in the table reads as the smallest int64, so it is never live);
- `profile`: int32, the row's interned `Profile` (every shared field; -1: no row);
- `uid`: 16 bytes. Signet's ids (`app.ids`, also a Signet peer's) are 128 bits written
  as 26 base32 digits; they are kept as those bits, and written out again for a hit. Any other
  uid (another spelling, another length) goes to a small dict instead.

28 bytes per row, in numpy arrays indexed by row id (the database's dense autoincrement ids;
the arrays double when a larger id arrives). A hit's public answer is built on demand
(`public`), and a feedback change moves a row to another profile (`update`).

Not thread-safe by itself: `MatchIndex` guards it with its lock (one writer, many readers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from app.ids import ALPHABET as ID_ALPHABET
from app.ids import PAIRS as _PAIRS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
ABSENT = np.iinfo(np.int64).min  # valid_until of a row that is not in the table
# Signet ids (app.ids): 128 bits as 26 base32 digits, most significant first; 26 digits hold
# 130 bits, so the first digit of an id is below 8.
_DIGIT = np.full(256, 255, dtype=np.uint8)
_DIGIT[np.frombuffer(ID_ALPHABET.encode(), dtype=np.uint8)] = np.arange(32, dtype=np.uint8)
_LOW60 = (1 << 60) - 1
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
        # A Signet id's 128 bits: digits 2-13 and 14-25 (60 bits each) in the low bits of the
        # two words, digits 0-1 (8 bits) in their top four bits.
        self._uid = np.zeros((capacity, 2), dtype=np.uint64)
        self._other_uids: dict[int, str] = {}  # uids that are not Signet ids
        self._profiles: list[Profile] = []
        self._profile_ids: dict[tuple[Any, ...], int] = {}  # Profile -> its id
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
        get = public.get
        # A plain tuple finds its Profile in the dict (equal and of equal hash); only a new
        # profile pays for the NamedTuple. Once per signal on a start-up load.
        key = (
            get("origin"),
            get("type", type_),
            tuple(get("categories") or ()),
            tuple(get("indicators") or ()),
            get("opinion"),
            get("confidence"),
            get("reviewed"),
            get("feedback_status"),
            subdomains,
        )
        pid = self._profile_ids.get(key)
        return self.intern(Profile._make(key)) if pid is None else pid

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
        uid = np.zeros((new, 2), dtype=np.uint64)
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
        self._other_uids.pop(row_id, None)
        words = _pack([uid]) if len(uid) == 26 and uid.isascii() else None
        if words is not None and words[1][0]:
            self._uid[row_id] = words[0][0]
        else:
            self._uid[row_id] = 0
            self._other_uids[row_id] = uid

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
        words = _pack(uids) if all(len(u) == 26 and u.isascii() for u in uids) else None
        if words is None or not words[1].all():
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
        self._uid[row_ids] = words[0]
        if self._other_uids:
            for r in row_ids.tolist():
                self._other_uids.pop(r, None)

    def remove(self, row_id: int) -> Profile | None:
        """Remove a row; returns its profile (None: there was none)."""
        profile = self.profile(row_id)
        if profile is None:
            return None
        self._valid[row_id] = ABSENT
        self._profile[row_id] = -1
        self._uid[row_id] = 0
        self._other_uids.pop(row_id, None)
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
        return self._uid_of(row_id)

    def _uid_of(self, row_id: int) -> str:
        other = self._other_uids.get(row_id)
        if other is not None:
            return other
        hi, lo = self._uid[row_id].tolist()
        a, b, p = hi & _LOW60, lo & _LOW60, _PAIRS
        # Digits two by two (10 bits): 0-1 from the words' top bits, then 6 pairs from each
        # word's 60 low bits; unrolled, as this runs for every hit (0.9 µs).
        return "".join(
            (
                p[(hi >> 56 & 0xF0) | lo >> 60],
                p[a >> 50],
                p[a >> 40 & 1023],
                p[a >> 30 & 1023],
                p[a >> 20 & 1023],
                p[a >> 10 & 1023],
                p[a & 1023],
                p[b >> 50],
                p[b >> 40 & 1023],
                p[b >> 30 & 1023],
                p[b >> 20 & 1023],
                p[b >> 10 & 1023],
                p[b & 1023],
            )
        )

    def live(self, row_id: int, now: float) -> bool:
        """In the table and not expired at `now` (POSIX seconds; compared in microseconds)."""
        return 0 <= row_id < self._valid.size and int(self._valid[row_id]) > _limit(now)

    def live_mask(self, row_ids: np.ndarray, now: float) -> np.ndarray:
        """`live` for many row ids at once."""
        inside = (row_ids >= 0) & (row_ids < self._valid.size)
        out = np.zeros(row_ids.shape, dtype=bool)
        out[inside] = self._valid[row_ids[inside]] > _limit(now)
        return out

    def public(self, row_id: int) -> dict[str, Any] | None:
        """What a hit answers about the row (a new dict), or None if it is not in the table."""
        p = self.profile(row_id)
        if p is None:
            return None
        return {
            "id": self._uid_of(row_id),
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
        """Change shared fields of the public answer of a row (e.g. its feedback status): the
        row moves to the profile with those fields. A row not in the table is left alone; its
        id and validity change only with the signal itself (`put`)."""
        p = self.profile(row_id)
        if p is None:
            return
        unknown = set(changes) - {*_SHARED, "categories", "indicators"}
        if unknown:
            raise ValueError(f"not fields of a match answer: {sorted(unknown)}")
        for name in ("categories", "indicators"):
            if name in changes:
                changes[name] = tuple(changes[name])
        if changes:
            self._profile[row_id] = self.intern(p._replace(**changes))


def _limit(now: float) -> int:
    """Live rows have valid_until above this (an int: comparing int64 microseconds with a float
    would round them to float64, which is coarser than a microsecond from 2255 on)."""
    return math.floor(now * 1e6)


def _pack(uids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """26-character ASCII uids as (n, 2) uint64 words (see `SignalTable.__init__`), and which of
    them are Signet ids (the others' words are meaningless)."""
    digits = _DIGIT[np.frombuffer("".join(uids).encode("ascii"), dtype=np.uint8)].reshape(-1, 26)
    ok = (digits != 255).all(axis=1) & (digits[:, 0] < 8)
    d = digits.astype(np.uint64)
    words = np.zeros((len(uids), 2), dtype=np.uint64)
    for col, first in ((0, 2), (1, 14)):
        w = words[:, col]
        for i in range(first, first + 12):
            w <<= np.uint64(5)
            w |= d[:, i]
    top = d[:, 0] << np.uint64(5) | d[:, 1]
    words[:, 0] |= (top >> np.uint64(4)) << np.uint64(60)
    words[:, 1] |= (top & np.uint64(15)) << np.uint64(60)
    return words, ok
