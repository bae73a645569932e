"""The in-memory match index of one worker: every active signal, by the way it is matched.

- exact types: a dict from match key (type, identifier key id, canonical value) to row ids;
- `pdq`: `PDQIndex` (exact Hamming range search);
- `vpdq`: a second `PDQIndex` over every stored video's distinct usable frame hashes, keyed
  `row_id << 20 | slot`, so a video query is one batched range search over all frames of all
  videos (not a scan per video); the vPDQ percentages are then counted per video hit;
- `domain` signals that cover their subdomains: also a dict by domain, probed with the query
  host and each parent down to its registrable domain (Public Suffix List);
- `text_tlsh`: a list scanned with TLSH's own distance (the number of TLSH signals is small);
- keywords inside free text: a dict of phrases under their fold 2 key (`app.signals.textfold`,
  computed here from the stored value, so keywords published before fold 2 are keyed alike),
  and a second dict under the leetspeak fold of that key; probed with every word n-gram of the
  text, so a message is checked in time linear in its length, not in the number of keywords.

What a hit answers about each signal (id, origin, categories, ...) is in a `SignalTable`
(`app.signals.signal_table`): columns by row id and interned profiles, not an object per signal.
PDQ rows need nothing else per row; exact-type rows keep their match key (to leave `exact` when
removed), keyword and whole-domain rows their value.

Pure: it knows nothing of the database. `app.services.index_sync` feeds it changes in commit
order. Expiry is checked at query time against `valid_until`, so an expired signal stops
matching at once, before any purge.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

import numpy as np
import tlsh

from app.errors import InvalidSignal
from app.signals.domains import covering_domains
from app.signals.pdq_index import MULTI_INDEX, PDQIndex, SharedLoad
from app.signals.signal_table import SignalTable, to_micros
from app.signals.textfold import leet_fold, match_key_text
from app.signals.types.video import (
    MAX_FRAMES,
    VpdqFrame,
    VpdqMatch,
    frame_ranges,
    parse_vpdq,
    usable_frames,
)

MAX_KEYWORD_WORDS = 8
_LOAD_BATCH = 10_000  # signals per step of a start-up load


@dataclass(frozen=True, slots=True)
class IndexedSignal:
    """One signal as the index is fed it (a change, or a row of the start-up load); the index
    keeps only what it needs of it (see the module docstring)."""

    row_id: int
    type: str
    match_key: str
    value: str
    valid_until: float  # POSIX seconds
    active: bool
    # What a match answers about the signal (id, origin, categories, ...), kept in the index's
    # SignalTable so a hit needs no database read.
    public: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None  # the log position of this version (tags the PDQ index's writes)
    subdomains: bool = False  # a domain signal that also covers its subdomains


_SLOT_BITS = 20  # frame slots per video in a vpdq index key; MAX_FRAMES fits
assert MAX_FRAMES < 1 << _SLOT_BITS


@dataclass(frozen=True, slots=True)
class _Video:
    frames: list[VpdqFrame]  # usable frames (quality >= 50), in frame order
    hashes: list[str]  # their distinct hashes; a hash's position is its slot in the key


def match_key(type_: str, value: str, key_id: str | None = None) -> str:
    """The exact-match key: identifiers only match under the same identifier key. A vpdq
    value (one line per frame) is keyed by its SHA-256, so the key stays short."""
    if type_ == "vpdq":
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return f"{type_}:{key_id}:{value}" if key_id else f"{type_}:{value}"


class _PrivateLoad:
    """A load without a shared base file: the worker builds its own base, which needs every
    code, so keys and codes are gathered as they come (40 B a code) and built at `finish`."""

    def __init__(self, layout: str) -> None:
        self._layout = layout
        self._keys = bytearray()  # int64 each
        self._codes = bytearray()  # 32 bytes each

    def feed(self, keys: np.ndarray, codes: np.ndarray) -> None:
        self._keys += np.ascontiguousarray(keys, np.int64).data
        self._codes += np.ascontiguousarray(codes, np.uint8).data

    def finish(self) -> PDQIndex:
        if not self._keys:
            return PDQIndex(layout=self._layout)
        keys = np.frombuffer(self._keys, np.int64)
        codes = np.frombuffer(self._codes, np.uint8).reshape(-1, 32)
        return PDQIndex.from_arrays(keys, codes, layout=self._layout)


def _bulk_load(path: str | None, seq: int, layout: str) -> SharedLoad | _PrivateLoad:
    """A load of a PDQ index in batches, of the state at log position `seq`: onto the host's
    shared base file at `path` (each batch compared with it, then dropped), or private."""
    if path is not None:
        return PDQIndex.shared_loader(path, tag=seq, background_compaction=True, layout=layout)
    return _PrivateLoad(layout)


class MatchIndex:
    """Thread-safe for one writer (the sync loop) and any number of concurrent readers."""

    def __init__(
        self,
        pdq_path: str | None = None,
        vpdq_path: str | None = None,
        *,
        pdq_layout: str = MULTI_INDEX,
    ) -> None:
        """`pdq_path`, `vpdq_path`: keep the base of the PDQ index, and of the vPDQ frame
        index, in these files, shared by the workers of the host (docs/scaling.md).
        `pdq_layout`: the kind of base both indexes build, "multi-index" or "compact"."""
        self._pdq_path = pdq_path
        self._vpdq_path = vpdq_path
        self._pdq_layout = pdq_layout
        self._lock = threading.RLock()
        self._exact: dict[str, set[int]] = {}
        self._pdq = PDQIndex(layout=pdq_layout)
        self._vpdq = PDQIndex(layout=pdq_layout)
        self._videos: dict[int, _Video] = {}
        self._tlsh: dict[int, str] = {}
        self._keywords: dict[str, set[int]] = {}
        self._keywords_leet: dict[str, set[int]] = {}
        self._domains: dict[str, set[int]] = {}  # domain signals covering their subdomains
        self._table = SignalTable()
        self._keys: dict[int, str] = {}  # exact-type rows: their match key
        self._values: dict[int, str] = {}  # keyword and whole-domain rows: their value

    def __len__(self) -> int:
        return len(self._table)

    def load(self, signals: Iterable[IndexedSignal], seq: int = -1, *, max_row_id: int = 0) -> None:
        """Replace the contents with `signals` (start-up, the state at log position `seq`),
        building the PDQ index in bulk (or reusing the host's shared base file).

        `signals` is read once, a batch at a time, so a generator (`IndexSync`) never has more
        than a batch of them alive as objects. A PDQ signal leaves its row in the table; its
        code is compared with the host's shared base file as its batch comes and then dropped
        (only codes that the file lacks are kept), or, without a shared file, gathered for a
        private build. `max_row_id`, if known, sizes the table at once."""
        with self._lock:
            self.__init__(  # type: ignore[misc]
                self._pdq_path, self._vpdq_path, pdq_layout=self._pdq_layout
            )
            self._table.reserve(max_row_id, exact=True)
            pdq_load = _bulk_load(self._pdq_path, seq, self._pdq_layout)
            videos: list[IndexedSignal] = []
            others: list[IndexedSignal] = []
            for batch in _batches(signals, _LOAD_BATCH):
                pdq = [s for s in batch if s.active and s.type == "pdq"]
                if pdq:
                    rows = self._put_rows(pdq)
                    codes = bytes.fromhex("".join([s.value for s in pdq]))
                    pdq_load.feed(rows, np.frombuffer(codes, np.uint8).reshape(-1, 32))
                for s in batch:
                    if s.active and s.type != "pdq":
                        (videos if s.type == "vpdq" else others).append(s)
            self._pdq = pdq_load.finish()
            del pdq_load
            # Video frames in bulk too: one (shared) base rather than a private copy per worker.
            frame_keys: list[int] = []
            frame_hashes: list[str] = []
            for s in videos:
                self._put_row(s)
                for key, h in self._register_video(s):
                    frame_keys.append(key)
                    frame_hashes.append(h)
            # All frames in one batch: a video's frames are gathered as strings anyway.
            vpdq_load = _bulk_load(self._vpdq_path, seq, self._pdq_layout)
            vpdq_load.feed(np.array(frame_keys, dtype=np.int64), _codes(frame_hashes))
            self._vpdq = vpdq_load.finish()
            for s in others:
                self._add(s)

    def apply(self, changes: Iterable[IndexedSignal]) -> None:
        """Apply changes in commit order: an active signal is (re)indexed, others removed."""
        with self._lock:
            for s in changes:
                self._remove(s.row_id, s.seq)
                if s.active:
                    self._add(s)

    def _put_row(self, s: IndexedSignal) -> None:
        """The signal's row in the table: what a hit answers, and its type for `_remove`."""
        self._table.put(
            s.row_id,
            str(s.public.get("id", "")),
            _micros(s),
            self._table.intern_public(s.public, s.type, s.subdomains),
        )

    def _put_rows(self, signals: Sequence[IndexedSignal]) -> np.ndarray:
        """`_put_row` for many (distinct row ids); returns their row ids."""
        table = self._table
        rows = np.fromiter((s.row_id for s in signals), dtype=np.int64, count=len(signals))
        table.put_many(
            rows,
            [str(s.public.get("id", "")) for s in signals],
            np.fromiter((_micros(s) for s in signals), dtype=np.int64, count=len(signals)),
            np.fromiter(
                (table.intern_public(s.public, s.type, s.subdomains) for s in signals),
                dtype=np.int32,
                count=len(signals),
            ),
        )
        return rows

    def _add(self, s: IndexedSignal) -> None:
        self._put_row(s)
        if s.type == "pdq":
            self._pdq.add(s.row_id, s.value, tag=s.seq)
        elif s.type == "vpdq":
            self._add_video(s)
        elif s.type == "text_tlsh":
            self._tlsh[s.row_id] = s.value
        else:
            self._exact.setdefault(s.match_key, set()).add(s.row_id)
            self._keys[s.row_id] = s.match_key
            if s.subdomains or s.type == "keyword":
                self._values[s.row_id] = s.value
            if s.subdomains:
                self._domains.setdefault(s.value, set()).add(s.row_id)
            if s.type == "keyword":
                key = match_key_text(s.value)
                self._keywords.setdefault(key, set()).add(s.row_id)
                self._keywords_leet.setdefault(leet_fold(key), set()).add(s.row_id)

    def _remove(self, row_id: int, seq: int | None = None) -> None:
        old = self._table.remove(row_id)
        if old is None:
            return
        if old.type == "pdq":
            self._pdq.remove(row_id, tag=seq)
        elif old.type == "vpdq":
            video = self._videos.pop(row_id, None)
            for slot in range(len(video.hashes) if video else 0):
                self._vpdq.remove(row_id << _SLOT_BITS | slot, tag=seq)
        elif old.type == "text_tlsh":
            self._tlsh.pop(row_id, None)
        else:
            _discard(self._exact, self._keys.pop(row_id, ""), row_id)
            value = self._values.pop(row_id, None)
            if old.subdomains and value is not None:
                _discard(self._domains, value, row_id)
            if old.type == "keyword" and value is not None:
                key = match_key_text(value)
                _discard(self._keywords, key, row_id)
                _discard(self._keywords_leet, leet_fold(key), row_id)

    def _add_video(self, s: IndexedSignal) -> None:
        frames = self._register_video(s)
        if frames:
            keys = [key for key, _ in frames]
            self._vpdq.add_many(keys, _codes([h for _, h in frames]), tag=s.seq)

    def _register_video(self, s: IndexedSignal) -> list[tuple[int, str]]:
        """Remember a video's frames; returns its distinct frame hashes with their index keys
        (row id and slot), for the caller to put in the frame index."""
        try:
            frames = usable_frames(parse_vpdq(s.value))
        except InvalidSignal:  # stored values are canonical; never let one stop the index
            return []
        hashes = sorted({f.pdq for f in frames})
        self._videos[s.row_id] = _Video(frames, hashes)
        return [(s.row_id << _SLOT_BITS | slot, h) for slot, h in enumerate(hashes)]

    def caught_up(self, seq: int) -> None:
        """Every change up to log position `seq` is applied: adopt a newer shared PDQ base
        another worker wrote, if there is one (cheap: one stat when there is none)."""
        for index in (self._pdq, self._vpdq):
            index.note_tag(seq)
            index.refresh_base()

    def public(self, row_id: int) -> dict[str, Any] | None:
        """What a hit on the signal answers (id, origin, type, categories, indicators,
        opinion, confidence, reviewed, valid_until, feedback_status), built now; None if the
        signal is no longer indexed."""
        with self._lock:
            return self._table.public(row_id)

    def update_public(self, row_id: int, **changes: Any) -> None:
        """Refresh what a hit shows (e.g. the feedback status) without re-indexing."""
        with self._lock:
            self._table.update(row_id, **changes)

    def _live(self, row_id: int, now: float) -> bool:
        return self._table.live(row_id, now)

    def exact(self, key: str, now: float) -> list[int]:
        with self._lock:
            return sorted(r for r in self._exact.get(key, ()) if self._live(r, now))

    def pdq(self, codes: np.ndarray, threshold: int, now: float) -> list[list[tuple[int, int]]]:
        """For each code (uint8 rows of 32), the live signals within `threshold` bits."""
        results = self._pdq.query_many(codes, threshold)
        with self._lock:
            return [self._live_hits(hits, now) for hits in results]

    def _live_hits(self, hits: list[tuple[int, int]], now: float) -> list[tuple[int, int]]:
        if len(hits) <= 8:
            return [(r, d) for r, d in hits if self._table.live(r, now)]
        live = self._table.live_mask(np.fromiter((r for r, _ in hits), np.int64, len(hits)), now)
        return [h for h, ok in zip(hits, live.tolist(), strict=True) if ok]

    def vpdq(
        self, frames: Sequence[VpdqFrame], threshold: int, now: float
    ) -> list[tuple[int, VpdqMatch]]:
        """Every live video sharing at least one frame within `threshold` bits with `frames`,
        with vPDQ's percentages and matching time ranges (thresholds are the caller's)."""
        query = usable_frames(frames)
        q_hashes = sorted({f.pdq for f in query})
        if not q_hashes:
            return []
        found = self._vpdq.query_many(_codes(q_hashes), threshold)
        q_hit: dict[int, set[str]] = {}
        c_hit: dict[int, set[int]] = {}
        best: dict[int, int] = {}
        for q_hash, hits in zip(q_hashes, found, strict=True):
            for key, distance in hits:
                row = key >> _SLOT_BITS
                q_hit.setdefault(row, set()).add(q_hash)
                c_hit.setdefault(row, set()).add(key & ((1 << _SLOT_BITS) - 1))
                best[row] = min(best.get(row, 257), distance)
        out = []
        with self._lock:
            for row in sorted(q_hit):
                video = self._videos.get(row)
                if video is None or not self._live(row, now):
                    continue
                matched = {video.hashes[i] for i in c_hit[row] if i < len(video.hashes)}
                out.append(
                    (
                        row,
                        VpdqMatch(
                            query_percent=100.0 * len(q_hit[row]) / len(q_hashes),
                            compared_percent=100.0 * len(matched) / len(video.hashes),
                            min_distance=best[row],
                            query_ranges=frame_ranges(query, q_hit[row]),
                            compared_ranges=frame_ranges(video.frames, matched),
                        ),
                    )
                )
        return out

    def domains_over(self, host: str, now: float) -> list[tuple[int, str]]:
        """Domain signals covering `host` through a parent (or itself), down to its registrable
        domain: (row id, the signal's domain)."""
        found: list[tuple[int, str]] = []
        with self._lock:
            for d in covering_domains(host):
                found += [(r, d) for r in sorted(self._domains.get(d, ())) if self._live(r, now)]
        return found

    def tlsh(self, digest: str, threshold: int, now: float) -> list[tuple[int, int]]:
        with self._lock:
            items = list(self._tlsh.items())
        hits = []
        for row_id, other in items:
            distance = tlsh.diff(digest, other)
            if distance <= threshold:
                hits.append((row_id, distance))
        with self._lock:
            return sorted((h for h in hits if self._live(h[0], now)), key=lambda h: (h[1], h[0]))

    def keywords_in(
        self, words: Sequence[str], now: float, *, leet: bool = False
    ) -> list[tuple[int, str]]:
        """Keyword signals whose phrase occurs as a run of whole words in `words`.

        `words` are already in fold 2 form (and leet-folded when `leet`)."""
        found: dict[int, str] = {}
        table = self._keywords_leet if leet else self._keywords
        with self._lock:
            for i in range(len(words)):
                for n in range(1, min(MAX_KEYWORD_WORDS, len(words) - i) + 1):
                    phrase = " ".join(words[i : i + n])
                    for row_id in table.get(phrase, ()):
                        if self._live(row_id, now):
                            found.setdefault(row_id, phrase)
        return sorted(found.items())

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "signals": len(self._table),
                "pdq": len(self._pdq),
                "vpdq": len(self._videos),
                "vpdq_frames": len(self._vpdq),
                "text_tlsh": len(self._tlsh),
                "exact_keys": len(self._exact),
                "profiles": self._table.profiles,
            }

    def pdq_memory(self) -> dict[str, dict[str, int | str]]:
        """Per index ("pdq", "vpdq" frames): its base's layout and bytes. `shared`: the base
        (one copy per host when it is in a file); `private`: this worker's delta and
        tombstones."""
        with self._lock:
            return {
                name: {"layout": index.layout, **index.memory_report()}
                for name, index in (("pdq", self._pdq), ("vpdq", self._vpdq))
            }


def _micros(s: IndexedSignal) -> int:
    """A signal's valid_until in microseconds: exactly the database's datetime when the public
    answer carries it, else from the POSIX seconds."""
    when = s.public.get("valid_until")
    return to_micros(when) if isinstance(when, datetime) else round(s.valid_until * 1e6)


def _batches(items: Iterable[IndexedSignal], size: int) -> Iterator[list[IndexedSignal]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _codes(hashes: Sequence[str]) -> np.ndarray:
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), dtype=np.uint8).reshape(-1, 32)


def _discard(d: dict[str, set[int]], key: str, row_id: int) -> None:
    ids = d.get(key)
    if ids is not None:
        ids.discard(row_id)
        if not ids:
            del d[key]
