"""A worker's start-up load onto a current shared PDQ base file holds no copy of the codes.

The load streams the signals a batch at a time and compares each batch's codes with the host's
mapped base file as it comes (`PDQIndex.shared_loader`); it used to gather every row id and
code (8 + 32 B a signal) before comparing them all, so its peak grew by that much more than
what it keeps (docs/scaling.md, "The start-up load's peak").
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import app.signals.match_index as match_index_module
from app.ids import new_id
from app.signals.match_index import IndexedSignal, MatchIndex, match_key

N = 200_000
UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
# What the load's peak may grow by, per signal. Measured here (tracemalloc, 200k signals, batches
# of 1,000): 35.6 B, of which 28.2 stay (the signal table: valid-until, profile and id, 28 B a
# row) and ~7 are one batch of signal objects (~1.3 KB each with their public dict and strings,
# a constant, not per signal). The old load, which gathered every row id and code (40 B) and
# compared them all at the end, peaked at 104.6 B. 50 is below anything that holds all the keys
# and codes (28 + 40 = 68), with 14 B to spare over the new figure for numpy's and Python's
# small allocations.
PEAK_LIMIT_PER_SIGNAL = 50
# Batches of 1,000 rather than the load's 10,000: a batch's objects cost the same whatever N
# is, and at 10,000 (~13 MB) they alone were 65 B a signal of a 200k load.
BATCH = 1_000


def _signals(uids: list[str], codes: list[str]) -> Iterator[IndexedSignal]:
    """Active PDQ signals in row-id order, built one at a time like `IndexSync`'s rows."""
    for row, (uid, code) in enumerate(zip(uids, codes, strict=True), start=1):
        yield IndexedSignal(
            row_id=row,
            type="pdq",
            match_key=match_key("pdq", code),
            value=code,
            valid_until=UNTIL.timestamp(),
            active=True,
            public={
                "id": uid,
                "origin": "a.example",
                "type": "pdq",
                "categories": ["csam"],
                "opinion": "investigation_seed",
                "confidence": 50,
                "reviewed": False,
                "valid_until": UNTIL,
                "feedback_status": "none",
            },
        )


def test_a_load_onto_a_current_shared_file_gathers_no_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match_index_module, "_LOAD_BATCH", BATCH)
    rng = np.random.default_rng(15)
    raw = rng.integers(0, 256, (N, 32), dtype=np.uint8)
    codes = [bytes(c).hex() for c in raw]
    uids = [new_id() for _ in range(N)]
    paths = {"pdq_path": str(tmp_path / "pdq.pdqbase"), "vpdq_path": str(tmp_path / "v.pdqbase")}
    # The first worker's load writes the host's file (and pays the one-off costs, imports and
    # caches, that are no part of what a load holds per signal).
    MatchIndex(**paths).load(_signals(uids, codes), seq=7, max_row_id=N)
    written = (tmp_path / "pdq.pdqbase").stat().st_ino

    index = MatchIndex(**paths)  # a second worker, or the next start: the file is current
    tracemalloc.start()
    try:
        index.load(_signals(uids, codes), seq=7, max_row_id=N)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak / N < PEAK_LIMIT_PER_SIGNAL, f"{peak / N:.1f} B a signal at the load's peak"
    assert (tmp_path / "pdq.pdqbase").stat().st_ino == written  # reused, not rebuilt
    assert index.pdq_memory()["pdq"]["private"] < N // 4  # a tombstone bit a code, no delta
    now = datetime.now(UTC).timestamp()
    probe = raw[[0, 12_345, N - 1]].copy()
    probe[:, 0] ^= 0b111  # 3 bits away
    assert index.pdq(probe, 31, now) == [[(1, 3)], [(12_346, 3)], [(N, 3)]]
    assert len(index) == N
