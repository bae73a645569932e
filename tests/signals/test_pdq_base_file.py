"""The PDQ base in a file: shared read-only by processes, swapped atomically, built off-lock."""

from __future__ import annotations

import ctypes
import errno
import gc
import random
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import app.signals.pdq_base as pdq_base_module
import app.signals.pdq_index as pdq_index_module
from app.signals.pdq_base import Base, BaseFileError
from app.signals.pdq_index import PDQIndex
from tests.signals.pdq_codes import as_array, flip, rand_code, ref_query


def planted_data(n: int, n_queries: int, seed: int) -> tuple[dict[int, bytes], list[bytes]]:
    """Random codes plus, per query, neighbours at every distance 0..40."""
    rng = random.Random(seed)
    entries = {i * 3 + 1: rand_code(rng) for i in range(n)}
    queries = [rand_code(rng) for _ in range(n_queries)]
    key = 10**12
    for q in queries:
        for d in range(41):
            entries[key] = flip(q, d, rng)
            key += 1
    return entries, queries


def _index_of(entries: dict[int, bytes], **kw: object) -> PDQIndex:
    keys = np.array(list(entries), np.int64)
    return PDQIndex.from_arrays(keys, as_array(list(entries.values())), **kw)  # type: ignore[arg-type]


def _check(index: PDQIndex, entries: dict[int, bytes], queries: list[bytes]) -> None:
    assert len(index) == len(entries)
    for t in (0, 16, 31, 47):
        for q in queries:
            assert index.query(q, t) == ref_query(entries, q, t)


def test_file_base_answers_like_memory_and_is_shared(tmp_path: Path) -> None:
    entries, queries = planted_data(3000, 4, seed=11)
    path = tmp_path / "pdq.pdqbase"
    index = _index_of(entries, path=path, tag=42)
    assert path.exists() and index.base_path == str(path) and index.base_tag == 42
    assert [p.name for p in tmp_path.iterdir()] == ["pdq.pdqbase"]  # no temp file left
    _check(index, entries, queries)
    # A second "worker" maps the same file: same answers, nothing rebuilt.
    other = PDQIndex(path=path)
    assert other.base_tag == 42
    _check(other, entries, queries)
    # 32 B code + 8 B key (these keys span more than 2**32) + 64 B positions per code, plus
    # 8 MiB of bucket bounds; next to nothing private per process (the old layout was
    # 112 B/code, all of it private to each worker).
    report = other.memory_report()
    n = len(entries)
    assert report["shared"] <= 104 * n + 16 * 65537 * 8 + 4096
    assert report["private"] <= n // 8 + 4096


def test_other_process_maps_the_file(tmp_path: Path) -> None:
    entries, queries = planted_data(2000, 2, seed=12)
    path = tmp_path / "pdq.pdqbase"
    _index_of(entries, path=path, tag=7)
    q = queries[0]
    script = (
        "import sys; from app.signals.pdq_index import PDQIndex;"
        f"i = PDQIndex(path={str(path)!r});"
        f"print(i.base_tag, i.query(bytes.fromhex({q.hex()!r}), 31))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == f"7 {ref_query(entries, q, 31)}"


def test_wide_and_negative_keys(tmp_path: Path) -> None:
    rng = random.Random(13)
    entries = {-(1 << 62): rand_code(rng), 5: rand_code(rng), (1 << 62): rand_code(rng)}
    entries.update({1000 + i: rand_code(rng) for i in range(100)})
    for path in (None, tmp_path / "wide.pdqbase"):
        index = _index_of(entries, path=path)
        _check(index, entries, list(entries.values())[:3])
        assert -(1 << 62) in index and (1 << 62) in index and 6 not in index
    narrow = {-(10**9) + i: rand_code(rng) for i in range(50)}
    index = _index_of(narrow, path=tmp_path / "narrow.pdqbase")
    assert index.memory_report()["shared"] <= 100 * 50 + 16 * 65537 * 8 + 4096  # uint32 keys
    assert -(10**9) in index and -(10**9) - 1 not in index and (1 << 40) not in index
    _check(index, narrow, list(narrow.values())[:3])


def test_updates_and_compaction_rewrite_the_file(tmp_path: Path) -> None:
    rng = random.Random(14)
    path = tmp_path / "pdq.pdqbase"
    seeds = [rand_code(rng) for _ in range(6)]
    entries = {k: flip(rng.choice(seeds), rng.randrange(48), rng) for k in range(300)}
    index = _index_of(entries, path=path, min_delta=32, delta_fraction=0.1)
    reader = PDQIndex(path=path)  # a second process's view, frozen at the first base
    first = dict(entries)
    inodes = {path.stat().st_ino}
    for step in range(400):
        key = rng.randrange(400)
        if rng.random() < 0.6:
            code = flip(rng.choice(seeds), rng.randrange(48), rng)
            index.add(key, code, tag=step)
            entries[key] = code
        else:
            assert index.remove(key, tag=step) is (entries.pop(key, None) is not None)
        inodes.add(path.stat().st_ino)
        if step % 50 == 0:
            _check(index, entries, [rng.choice(seeds)])
    assert len(inodes) >= 2  # compaction renamed new files in (inode numbers get reused)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pdq.pdqbase", "pdq.pdqbase.lock"]
    _check(index, entries, seeds[:2])
    _check(reader, first, seeds[:2])  # its old mapping still answers for its own state


def test_adopting_another_process_base_replays_only_later_writes(tmp_path: Path) -> None:
    """Two workers follow the same tagged log; one compacts, the other adopts its file."""
    rng = random.Random(15)
    path = tmp_path / "pdq.pdqbase"
    seeds = [rand_code(rng) for _ in range(4)]
    log: list[tuple[int, int, bytes | None]] = []  # (tag, key, code or None = delete)
    for tag in range(600):
        key = rng.randrange(150)
        code = flip(rng.choice(seeds), rng.randrange(48), rng) if rng.random() < 0.7 else None
        log.append((tag, key, code))

    def apply(index: PDQIndex, ops: list[tuple[int, int, bytes | None]]) -> None:
        for tag, key, code in ops:
            if code is None:
                index.remove(key, tag=tag)
            else:
                index.add(key, code, tag=tag)

    def state(upto: int) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for _tag, key, code in log[:upto]:
            if code is None:
                out.pop(key, None)
            else:
                out[key] = code
        return out

    big = dict(min_delta=10**9)  # no automatic compaction: the test decides who compacts
    builder = PDQIndex(path=path, **big)  # type: ignore[arg-type]
    ahead = PDQIndex(path=path, **big)  # type: ignore[arg-type]
    behind = PDQIndex(path=path, **big)  # type: ignore[arg-type]
    apply(builder, log[:300])
    apply(ahead, log[:450])
    apply(behind, log[:100])
    builder.compact()
    assert builder.base_tag == 299
    assert ahead.refresh_base() and behind.refresh_base()
    assert not ahead.refresh_base()  # nothing new
    assert ahead.base_tag == 299
    _check(ahead, state(450), seeds)
    # `behind` now holds the base's newer state; re-applying its log from where it was is
    # harmless (each write sets a key's final value) and ends in the right state.
    _check(behind, state(300), seeds)
    apply(behind, log[100:600])
    apply(ahead, log[450:600])
    _check(behind, state(600), seeds)
    _check(ahead, state(600), seeds)
    # A base older than the one in use is never adopted.
    stale = tmp_path / "stale.pdqbase"
    Base.build(np.array([1], np.int64), np.zeros((1, 4), np.uint64), tag=5, path=stale)
    stale.replace(path)
    assert not ahead.refresh_base()
    _check(ahead, state(600), seeds)


def test_a_base_older_than_a_load_is_not_adopted(tmp_path: Path) -> None:
    """A worker loaded onto the shared file holds only its differences from that file. A base
    another worker compacts later, at an older log position, lacks what changed between that
    position and the load's, which those differences do not hold: adopting it would lose it.
    Here key 2 is removed at 15 and put back at 25; the file at 10 and the load at 30 agree."""
    rng = random.Random(16)
    path = tmp_path / "pdq.pdqbase"
    a, b, c = (rand_code(rng) for _ in range(3))
    big = dict(min_delta=10**9)  # no automatic compaction: the test decides who compacts
    PDQIndex.from_arrays(np.array([1, 2], np.int64), as_array([a, b]), path=path, tag=10)
    behind = PDQIndex.open_shared(path, np.array([1], np.int64), as_array([a]), tag=20, **big)  # type: ignore[arg-type]
    loaded = PDQIndex.open_shared(  # type: ignore[arg-type]
        path, np.array([1, 2], np.int64), as_array([a, b]), tag=30, **big
    )
    behind.compact()
    assert behind.base_tag == 20
    assert not loaded.refresh_base()
    _check(loaded, {1: a, 2: b}, [a, b, c])
    # A base at the load's position or later is adopted, and the later writes replayed onto it.
    behind.add(2, b, tag=25)
    behind.add(3, c, tag=35)
    behind.compact()
    loaded.add(3, c, tag=35)
    loaded.add(1, c, tag=36)
    assert loaded.refresh_base() and loaded.base_tag == 35
    _check(loaded, {1: c, 2: b, 3: c}, [a, b, c])


@contextmanager
def _build_held(index: PDQIndex, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A compaction of `index` on its own thread, held once its build has begun (the snapshot
    taken, the writer lock free) for the body of the `with`; then let go and waited for. Every
    patch of `monkeypatch` is undone after it ends."""
    started, release = threading.Event(), threading.Event()
    real_build = Base.build

    def held_build(*args: object, **kwargs: object) -> Base:
        started.set()
        assert release.wait(30)
        return real_build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pdq_index_module.Base, "build", held_build)
    compactor = threading.Thread(target=index.compact)
    compactor.start()
    try:
        assert started.wait(30)
        yield
    finally:
        release.set()
        compactor.join(30)
        monkeypatch.undo()


def test_compaction_does_not_stall_readers_or_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a (deliberately held) build runs, writes and queries go on; nothing is lost."""
    entries, queries = planted_data(2000, 2, seed=16)
    index = _index_of(entries, path=tmp_path / "pdq.pdqbase", min_delta=10**9)
    index.add(-1, queries[0])  # something to compact
    entries[-1] = queries[0]
    rng = random.Random(17)
    done = threading.Event()

    def writer() -> None:
        for k in range(-2, -200, -1):
            code = flip(queries[1], rng.randrange(40), rng)
            index.add(k, code)
            entries[k] = code
        for k in list(entries)[:50]:
            index.remove(k)
            del entries[k]
        done.set()

    with _build_held(index, monkeypatch):
        w = threading.Thread(target=writer)
        w.start()
        assert done.wait(30), "a writer waited for the build"
        _check(index, entries, queries)  # readers too
    w.join(30)
    assert index.base_tag == -1 and len(index) == len(entries)
    _check(index, entries, queries)


def test_background_compaction(tmp_path: Path) -> None:
    rng = random.Random(18)
    entries = {k: rand_code(rng) for k in range(500)}
    index = _index_of(
        entries, path=tmp_path / "b.pdqbase", min_delta=16, background_compaction=True
    )
    for k in range(500, 700):
        entries[k] = rand_code(rng)
        index.add(k, entries[k])
    index.wait_for_compaction(30)
    index.compact()
    _check(index, entries, [entries[3], entries[650]])


def test_bad_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdqbase"
    junk.write_bytes(b"not a base" * 100)
    with pytest.raises(BaseFileError):
        Base.open(junk)
    with pytest.raises(BaseFileError):
        Base.open(tmp_path / "missing.pdqbase")
    good = tmp_path / "good.pdqbase"
    Base.build(np.arange(1000, dtype=np.int64), np.zeros((1000, 4), np.uint64), path=good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(BaseFileError):
        Base.open(good)


def test_open_shared_reuses_a_file_but_never_trusts_it(tmp_path: Path) -> None:
    """A worker starting on a host where a base file exists (an earlier run, another worker)
    maps it and applies only what differs from the database's state; a file far from that
    state is rebuilt. Either way it answers exactly for the state it was given."""
    rng = random.Random(19)
    path = tmp_path / "pdq.pdqbase"
    old = {k: rand_code(rng) for k in range(5000)}
    _index_of(old, path=path, tag=10)
    first_inode = path.stat().st_ino
    now = dict(old)
    for k in range(0, 40):
        del now[k]  # removed since the file was written
    for k in range(40, 60):
        now[k] = rand_code(rng)  # changed
    for k in range(6000, 6030):
        now[k] = rand_code(rng)  # new
    keys = np.array(list(now), np.int64)
    index = PDQIndex.open_shared(path, keys, as_array(list(now.values())), tag=20)
    assert path.stat().st_ino == first_inode  # small difference: the file is reused
    _check(index, now, [now[50], now[6001], old[3], old[100]])
    far = {k: rand_code(rng) for k in range(7000, 12000)}
    keys = np.array(list(far), np.int64)
    index = PDQIndex.open_shared(path, keys, as_array(list(far.values())), tag=30)
    assert index.base_tag == 30  # rebuilt for everyone
    _check(index, far, [far[7000], old[100]])
    empty = PDQIndex.open_shared(
        tmp_path / "new.pdqbase", np.empty(0, np.int64), np.empty((0, 32), np.uint8)
    )
    assert len(empty) == 0 and (tmp_path / "new.pdqbase").exists()


def test_open_shared_compares_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison with the file runs a chunk of keys at a time (it bounds a start-up load's
    peak memory); chunks far smaller than the differences give the same answers."""
    monkeypatch.setattr(pdq_index_module, "_COMPARE_CHUNK", 7)
    test_open_shared_reuses_a_file_but_never_trusts_it(tmp_path)


def test_repeated_keys_keep_their_last_code_and_increasing_keys_are_not_copied() -> None:
    rng = random.Random(3)
    codes = as_array([rand_code(rng) for _ in range(6)]).view(np.uint64)
    keys = np.array([5, 9, 5, 12, 9, 20], np.int64)
    kept_keys, kept_codes = pdq_index_module._last_of_each_key(keys, codes)
    assert kept_keys.tolist() == [5, 12, 9, 20]
    assert (kept_codes == codes[[2, 3, 4, 5]]).all()
    increasing = np.array([1, 2, 7, 30, 31, 40], np.int64)
    same_keys, same_codes = pdq_index_module._last_of_each_key(increasing, codes)
    assert same_keys is increasing and same_codes is codes


# --------------------------------------------------------------------------- compact bases


def test_compact_file_is_codes_and_keys_only_and_answers_exactly(tmp_path: Path) -> None:
    """A compact base holds 36 B per code (uint32 key + code): the ≤ 1.5x-raw layout. Other
    processes map it and answer exactly like the chunk tables, through compaction too."""
    entries, queries = planted_data(3000, 4, seed=21)
    entries = {k % (1 << 31): v for k, v in entries.items()}  # keys that narrow to uint32
    path = tmp_path / "pdq.pdqbase"
    index = _index_of(entries, path=path, tag=5, layout="compact", min_delta=32)
    assert index.layout == "compact" and Base.open(path).kind == "compact"
    _check(index, entries, queries)
    n = len(entries)
    assert index.memory_report()["shared"] <= 36 * n + 3 * 4096  # page-aligned arrays
    other = PDQIndex(path=path)  # another worker, whatever its own setting
    assert other.layout == "compact"
    _check(other, entries, queries)
    rng = random.Random(22)
    for step in range(150):  # enough writes to cross the limit: compaction keeps the kind
        key = rng.randrange(5000)
        entries[key] = flip(queries[step % 4], rng.randrange(40), rng)
        index.add(key, entries[key], tag=6 + step)
    assert Base.open(path).tag > 5 and Base.open(path).kind == "compact"
    _check(index, entries, queries)


def test_open_shared_rebuilds_a_base_of_the_other_layout(tmp_path: Path) -> None:
    """An operator switching SIGNET_PDQ_LAYOUT: the host's file is rebuilt in the new layout
    at the next start, however small the difference in its contents."""
    rng = random.Random(23)
    path = tmp_path / "pdq.pdqbase"
    entries = {k: rand_code(rng) for k in range(2000)}
    keys = np.array(list(entries), np.int64)
    codes = as_array(list(entries.values()))
    _index_of(entries, path=path, tag=10)
    assert Base.open(path).kind == "multi-index"
    index = PDQIndex.open_shared(path, keys, codes, tag=10, layout="compact")
    assert index.layout == "compact" and Base.open(path).kind == "compact"
    _check(index, entries, [entries[3], rand_code(rng)])
    back = PDQIndex.open_shared(path, keys, codes, tag=10)
    assert back.layout == "multi-index" and Base.open(path).kind == "multi-index"
    _check(back, entries, [entries[3]])


def test_files_without_a_kind_are_multi_index_and_bad_kinds_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pdqbase"
    Base.build(np.arange(100, dtype=np.int64), np.zeros((100, 4), np.uint64), path=path)
    raw = bytearray(path.read_bytes())
    header = bytes(raw[:4096]).decode()
    # A file written before compact bases existed has no "kind" in its header.
    old = header.replace('"kind": "multi-index", ', "")
    assert old != header
    raw[:4096] = old.ljust(4095).encode() + b"\n"
    path.write_bytes(bytes(raw))
    assert Base.open(path).kind == "multi-index"
    for bad in ('"kind": "approximate", ', '"kind": "compact", '):  # unknown; arrays mismatch
        raw[:4096] = header.replace('"kind": "multi-index", ', bad).ljust(4095).encode() + b"\n"
        path.write_bytes(bytes(raw))
        with pytest.raises(BaseFileError):
            Base.open(path)


# --------------------------------------------------------------------------- a load in batches


def _holds_exactly(index: PDQIndex, entries: dict[int, bytes], rng: random.Random) -> None:
    """`index` holds exactly `entries`: every key at its code, nothing else."""
    assert len(index) == len(entries)
    probe = rand_code(rng)
    assert index.query(probe, 256) == ref_query(entries, probe, 256)  # every key, no other
    for key, code in entries.items():
        assert (key, 0) in index.query(code, 0)


def _feed_in_batches(
    load: pdq_index_module.SharedLoad, fed: list[tuple[int, bytes]], batch: int
) -> None:
    for start in range(0, len(fed), batch):
        part = fed[start : start + batch]
        load.feed(np.array([k for k, _ in part], np.int64), as_array([c for _, c in part]))


def _final(fed: list[tuple[int, bytes]]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for key, code in fed:
        out[key] = code  # a repeated key keeps its last code
    return out


def _what_a_load_feeds(
    old: dict[int, bytes], rng: random.Random, *, in_key_order: bool
) -> list[tuple[int, bytes]]:
    """A database's state against a base file of `old`: 40 keys removed, 20 changed, 30 added;
    out of key order, also keys fed twice (changed then back to the file's code, the file's
    code then changed, a new key twice)."""
    now = {k: c for k, c in old.items() if k >= 40}
    for k in range(40, 60):
        now[k] = rand_code(rng)
    for k in range(10**6, 10**6 + 30):
        now[k] = rand_code(rng)
    fed = sorted(now.items())
    if in_key_order:
        return fed
    rng.shuffle(fed)
    earlier = [(k, rand_code(rng)) for k in range(60, 70)]  # last fed with the file's code
    earlier += [(k, old[k]) for k in range(40, 50)]  # last fed with another code
    earlier += [(k, rand_code(rng)) for k in range(10**6, 10**6 + 5)]  # new, fed twice
    return earlier + fed


@pytest.mark.parametrize("batch", [1, 7, 500, 10**9])
@pytest.mark.parametrize("in_key_order", [True, False])
def test_a_load_in_batches_holds_what_it_was_fed(
    tmp_path: Path, batch: int, in_key_order: bool
) -> None:
    """Close to the file: the file is kept and only the differences are private writes."""
    rng = random.Random(31 + batch)
    path = tmp_path / "pdq.pdqbase"
    old = {k: rand_code(rng) for k in range(2000)}
    _index_of(old, path=path, tag=10)
    inode = path.stat().st_ino
    fed = _what_a_load_feeds(old, rng, in_key_order=in_key_order)
    load = PDQIndex.shared_loader(path, tag=20, min_delta=256)
    _feed_in_batches(load, fed, batch)
    index = load.finish()
    assert path.stat().st_ino == inode and index.base_tag == 10  # the file, reused
    assert index.memory_report()["private"] < 1 << 20  # ~90 writes (a private base: 8+ MiB)
    entries = _final(fed)
    _holds_exactly(index, entries, rng)
    private = _index_of(entries)  # the same state built privately answers alike
    for code in (old[45], old[65], entries[10**6 + 2], rand_code(rng)):
        assert index.query(code, 47) == private.query(code, 47)


@pytest.mark.parametrize("batch", [1, 7, 10**9])
@pytest.mark.parametrize("in_key_order", [True, False])
def test_a_load_far_from_the_file_writes_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int, in_key_order: bool
) -> None:
    """Past the limit the load writes a new base for everyone from all it was fed: the file's
    entries it was fed unchanged (read back from the file) and the changes, merged in key order
    when the load came in key order (so the build need not sort)."""
    rng = random.Random(41 + batch)
    path = tmp_path / "pdq.pdqbase"
    old = {k: rand_code(rng) for k in range(2000)}
    _index_of(old, path=path, tag=10)
    fed = _what_a_load_feeds(old, rng, in_key_order=in_key_order)
    built_from: list[np.ndarray] = []
    real_build = Base.build

    def build(keys: np.ndarray, *args: object, **kwargs: object) -> Base:
        built_from.append(keys.copy())
        return real_build(keys, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pdq_index_module.Base, "build", build)
    load = PDQIndex.shared_loader(path, tag=20, min_delta=64)  # 90 changes > 64
    _feed_in_batches(load, fed, batch)
    index = load.finish()
    monkeypatch.undo()
    (keys,) = built_from
    assert sorted(keys.tolist()) == sorted(_final(fed))
    assert bool(np.all(keys[1:] > keys[:-1])) is in_key_order
    assert index.base_tag == 20 and Base.open(path).tag == 20  # rebuilt for everyone
    assert index.memory_report()["private"] <= 2000 // 8 + 4096  # nothing but tombstone bits
    _holds_exactly(index, _final(fed), rng)
    _holds_exactly(PDQIndex(path=path), _final(fed), rng)  # what other workers map


@pytest.mark.parametrize("batch", [1, 7, 10**9])
def test_a_load_with_no_file_or_the_other_layout_writes_one(tmp_path: Path, batch: int) -> None:
    rng = random.Random(51 + batch)
    entries = {k: rand_code(rng) for k in range(0, 3000, 3)}
    fed = list(entries.items())
    first = tmp_path / "first.pdqbase"
    load = PDQIndex.shared_loader(first, tag=5)
    _feed_in_batches(load, fed, batch)
    index = load.finish()
    assert index.base_path == str(first) and Base.open(first).tag == 5
    _holds_exactly(index, entries, rng)
    # The same contents in a compact file: rebuilt as multi-index, however small the difference.
    other = tmp_path / "other.pdqbase"
    _index_of(entries, path=other, tag=5, layout="compact")
    load = PDQIndex.shared_loader(other, tag=6)
    _feed_in_batches(load, fed, batch)
    index = load.finish()
    assert index.layout == "multi-index" and Base.open(other).kind == "multi-index"
    _holds_exactly(index, entries, rng)
    empty = PDQIndex.shared_loader(tmp_path / "empty.pdqbase", tag=1).finish()
    assert len(empty) == 0 and Base.open(tmp_path / "empty.pdqbase").size == 0


def test_a_base_written_while_a_load_streams_is_compared_with_not_overwritten(
    tmp_path: Path,
) -> None:
    """Two workers start together with no file: the first to finish writes it; the other
    compares what it was fed with that file instead of writing a second one."""
    rng = random.Random(61)
    path = tmp_path / "pdq.pdqbase"
    entries = {k: rand_code(rng) for k in range(2000)}
    fed = list(entries.items())
    slow, fast = (PDQIndex.shared_loader(path, tag=9) for _ in range(2))
    _feed_in_batches(slow, fed[:1000], 300)
    _feed_in_batches(fast, fed, 300)
    written = fast.finish()
    inode = path.stat().st_ino
    ahead = dict(entries)  # the slow one is fed one more signal
    ahead[5000] = rand_code(rng)
    _feed_in_batches(slow, [*fed[1000:], (5000, ahead[5000])], 300)
    index = slow.finish()
    assert path.stat().st_ino == inode and index.base_tag == 9  # the other's file, reused
    _holds_exactly(written, entries, rng)
    _holds_exactly(index, ahead, rng)
    with pytest.raises(RuntimeError):
        slow.feed(np.array([1], np.int64), as_array([rand_code(rng)]))
    with pytest.raises(RuntimeError):
        slow.finish()


@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_a_load_compares_with_a_base_compacted_elsewhere_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """A running worker's compaction renames a newer base in while a load streams: the load
    compares everything it was fed (the old file's entries it matched, read back from the old
    mapping, and its changes) with the new file, and keeps that file."""
    monkeypatch.setattr(pdq_index_module, "_COMPARE_CHUNK", chunk)
    rng = random.Random(71)
    path = tmp_path / "pdq.pdqbase"
    old = {k: rand_code(rng) for k in range(2000)}
    _index_of(old, path=path, tag=10)
    now = {k: c for k, c in old.items() if k >= 10}
    now.update({k: rand_code(rng) for k in range(10, 20)})
    now.update({k: rand_code(rng) for k in range(5000, 5010)})
    fed = sorted(now.items())
    load = PDQIndex.shared_loader(path, tag=30)
    _feed_in_batches(load, fed[:900], 100)
    compacted = dict(now)  # the other worker's state, a little behind this load's
    compacted.update({k: rand_code(rng) for k in range(20, 30)})
    compacted.update({k: rand_code(rng) for k in range(6000, 6005)})
    _index_of(compacted, path=path, tag=25)
    inode = path.stat().st_ino
    _feed_in_batches(load, fed[900:], 100)
    index = load.finish()
    assert path.stat().st_ino == inode and index.base_tag == 25  # the new file, kept
    _holds_exactly(index, now, rng)


@pytest.mark.parametrize("layout", ["multi-index", "compact"])
def test_a_base_file_is_made_durable_by_fsync_not_by_the_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """Python's mmap.flush (msync) keeps the GIL for the whole write-back, so a compaction on
    the background thread would stall every query and write of the process meanwhile; the
    build writes the file back with os.fsync (GIL released) before renaming it in."""
    flushed: list[object] = []
    synced: list[str] = []
    real_fsync = pdq_base_module.os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(f"/proc/self/fd/{fd}").resolve().name)
        real_fsync(fd)

    monkeypatch.setattr(np.memmap, "flush", lambda self: flushed.append(self))
    monkeypatch.setattr(pdq_base_module.os, "fsync", fsync)
    entries, queries = planted_data(500, 2, seed=21)
    path = tmp_path / "pdq.pdqbase"
    index = _index_of(entries, path=path, layout=layout, min_delta=10**9)
    index.add(-1, queries[0])
    entries[-1] = queries[0]
    index.compact()
    assert flushed == []
    # Each of the two files was synced under its temporary name, before the rename.
    assert len([name for name in synced if name.endswith(".tmp")]) == 2
    monkeypatch.undo()
    _check(index, entries, queries)
    _check(PDQIndex(path=path), entries, queries)  # what another process maps


def test_compaction_takes_the_live_delta_without_walking_it_under_the_writer_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walking the delta's key map under the writer lock held the lock and the GIL for 0.2 s
    at 100M codes (a delta of 3.1M entries); the live delta entries of the snapshot are read
    from its arrays instead, and writes to them during the build still land."""
    entries, queries = planted_data(1000, 2, seed=23)
    index = _index_of(entries, path=tmp_path / "pdq.pdqbase", min_delta=10**9)
    rng = random.Random(24)
    for k in range(-1, -120, -1):  # a delta, with entries replaced and removed in it
        entries[k] = flip(queries[k % 2], rng.randrange(40), rng)
        index.add(k, entries[k])
    for k in range(-1, -30, -1):
        entries[k] = flip(queries[0], rng.randrange(40), rng)
        index.add(k, entries[k])
    for k in range(-30, -50, -1):
        index.remove(k)
        del entries[k]
    walked_locked: list[bool] = []

    class Watched(dict[int, int]):
        def values(self):  # type: ignore[no-untyped-def]
            walked_locked.append(index._lock.locked())
            return super().values()

        def items(self):  # type: ignore[no-untyped-def]
            walked_locked.append(index._lock.locked())
            return super().items()

        def __iter__(self):  # type: ignore[no-untyped-def]
            walked_locked.append(index._lock.locked())
            return super().__iter__()

    index._delta_slot = Watched(index._delta_slot)
    with _build_held(index, monkeypatch):
        for k in (-1, -2, -60, -61):  # snapshot's delta entries, replaced or removed meanwhile
            entries[k] = flip(queries[1], rng.randrange(40), rng)
            index.add(k, entries[k])
        for k in (-3, -62, 4):  # and a base entry
            assert index.remove(k)
            del entries[k]
    assert True not in walked_locked
    assert index._snap.base.size == 1000 + 41 * 2 + 119 - 20  # the live delta went into it
    _check(index, entries, queries)


def test_writes_made_during_the_build_are_redone_without_the_writer_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redoing every write made during the build onto the new base under the writer lock kept
    writers waiting ~0.1 s at 10M codes; they are redone before the lock is taken. Meanwhile
    readers see every write (the old code showed them the new base before the writes were
    redone onto it)."""
    entries, queries = planted_data(1000, 2, seed=25)
    index = _index_of(entries, path=tmp_path / "pdq.pdqbase", min_delta=10**9)
    index.add(-1, queries[0])
    entries[-1] = queries[0]
    rng = random.Random(26)
    with _build_held(index, monkeypatch):
        for k in range(-2, -60, -1):  # writes during the build
            entries[k] = flip(queries[k % 2], rng.randrange(40), rng)
            index.add(k, entries[k])
        for k in (-2, -3, 4, 7):
            assert index.remove(k)
            del entries[k]
        # From here on only the compactor writes: note whether it holds the lock to redo them.
        redone_locked: list[bool] = []
        readers_saw_all: list[bool] = []
        real_upsert, real_remove = PDQIndex._upsert, PDQIndex._remove

        def note() -> None:
            redone_locked.append(index._lock.locked())
            readers_saw_all.append(
                all(index.query(q, 40) == ref_query(entries, q, 40) for q in queries)
            )

        def upsert(self: PDQIndex, *args: Any) -> None:
            note()
            real_upsert(self, *args)

        def remove(self: PDQIndex, *args: Any) -> bool:
            note()
            return real_remove(self, *args)

        monkeypatch.setattr(PDQIndex, "_upsert", upsert)
        monkeypatch.setattr(PDQIndex, "_remove", remove)
    assert len(redone_locked) == 58 + 4 and True not in redone_locked
    assert False not in readers_saw_all
    assert index._snap.delta_len == 58 and index._base_dead == 2
    _check(index, entries, queries)


def test_the_replaced_base_is_released_by_the_compaction_not_by_a_query(tmp_path: Path) -> None:
    """Dropping the last mapping of a replaced base file frees its pages (~0.17 s a GiB), and a
    query holding the old base when the compaction ended paid that; the compaction waits for
    such queries and drops it itself."""
    entries, queries = planted_data(500, 1, seed=27)
    index = _index_of(entries, path=tmp_path / "pdq.pdqbase", min_delta=10**9)
    index.add(-1, queries[0])
    old = index._snap.base
    first = old.file_id
    released_on: list[str] = []
    assert old.keys is not None
    weakref.finalize(old.keys, lambda: released_on.append(threading.current_thread().name))
    del old
    holding, let_go = threading.Event(), threading.Event()

    def query_in_flight() -> None:
        snap = index._snap  # what a query holds for its whole call
        holding.set()
        assert let_go.wait(30)
        del snap

    reader = threading.Thread(target=query_in_flight, name="query")
    reader.start()
    assert holding.wait(30)
    compactor = threading.Thread(target=index.compact, name="pdq-compact")
    compactor.start()
    for _ in range(3000):  # until the new base is in place
        if index._snap.base.file_id != first:
            break
        time.sleep(0.01)
    let_go.set()
    reader.join(30)
    compactor.join(30)
    gc.collect()
    assert released_on == ["pdq-compact"]


def test_adopting_a_base_redoes_the_later_writes_without_the_writer_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker adopting the base another worker compacted redid its writes past the base's tag
    (those made during that compaction) onto it under the writer lock, keeping its writers
    waiting; they are redone before the lock is taken, and a write made meanwhile under it.
    Readers see every write throughout."""
    rng = random.Random(28)
    path = tmp_path / "pdq.pdqbase"
    entries, queries = planted_data(500, 2, seed=28)
    keys = np.array(list(entries), np.int64)
    big = dict(min_delta=10**9)  # no automatic compaction: the test decides who compacts
    builder = PDQIndex.from_arrays(keys, as_array(list(entries.values())), path=path, tag=0, **big)  # type: ignore[arg-type]
    other = PDQIndex(path=path, **big)  # type: ignore[arg-type]
    log: list[tuple[int, int, bytes | None]] = []
    for tag in range(1, 71):
        key = rng.choice([-tag, rng.choice(list(keys[:200]))])
        code = flip(queries[tag % 2], rng.randrange(40), rng) if tag % 5 else None
        log.append((tag, int(key), code))

    def apply(index: PDQIndex, ops: list[tuple[int, int, bytes | None]]) -> None:
        for tag, key, code in ops:
            if code is None:
                index.remove(key, tag=tag)
            else:
                index.add(key, code, tag=tag)

    apply(builder, log[:40])
    apply(other, log)  # the other worker has followed the log further
    for _tag, key, code in log:
        if code is None:
            entries.pop(key, None)
        else:
            entries[key] = code
    builder.compact()
    assert builder.base_tag == 40
    redone_locked: list[bool] = []
    readers_saw_all: list[bool] = []
    real_upsert, real_remove = PDQIndex._upsert, PDQIndex._remove

    def write_meanwhile() -> None:  # a write of the log's next entry, by another thread
        code = flip(queries[0], 3, rng)
        other.add(-71, code, tag=71)
        entries[-71] = code

    def note(self: PDQIndex) -> None:
        if self is other:
            return  # the other thread's write itself
        redone_locked.append(other._lock.locked())
        readers_saw_all.append(
            all(other.query(q, 40) == ref_query(entries, q, 40) for q in queries)
        )
        if len(redone_locked) == 1 and not other._lock.locked():
            w = threading.Thread(target=write_meanwhile)
            w.start()
            w.join(30)

    def upsert(self: PDQIndex, *args: Any) -> None:
        note(self)
        real_upsert(self, *args)

    def remove(self: PDQIndex, *args: Any) -> bool:
        note(self)
        return real_remove(self, *args)

    monkeypatch.setattr(PDQIndex, "_upsert", upsert)
    monkeypatch.setattr(PDQIndex, "_remove", remove)
    assert other.refresh_base()
    monkeypatch.undo()
    assert other.base_tag == 40
    # The 30 writes past the base's tag (deletes only where they removed something) before
    # the lock, then the one made meanwhile under it.
    assert len(redone_locked) >= 2 and redone_locked[-1] is True
    assert True not in redone_locked[:-1]
    assert False not in readers_saw_all
    _check(other, entries, queries)
    assert -71 in other


class _NotedDict(dict):  # type: ignore[type-arg]
    """A key map that notes, when freed, whether its index's writer lock was held."""

    def __init__(self, items: dict[int, int], index: PDQIndex, noted: list[bool]) -> None:
        super().__init__(items)
        self.index, self.noted = index, noted

    def __del__(self) -> None:
        self.noted.append(self.index._lock.locked())


def test_what_a_swap_replaces_is_freed_with_the_writer_lock_free(tmp_path: Path) -> None:
    """Swapping in a new base dropped the old snapshot, delta key map and journal under the
    writer lock: freeing them kept writers waiting (a key map of 3.1M entries at 100M codes),
    and when adopting another worker's base the old snapshot held the old base's last reference,
    so its unmapping, which frees the replaced file's pages, ran under the lock too (11-18 ms
    for a 200k-code file). Both, on compaction and on adoption, now go after the lock is let go."""
    rng = random.Random(29)
    path = tmp_path / "pdq.pdqbase"
    entries, queries = planted_data(500, 1, seed=29)
    big = dict(min_delta=10**9)  # no automatic compaction: the test decides who compacts
    builder = _index_of(entries, path=path, **big)
    other = PDQIndex(path=path, **big)  # type: ignore[arg-type]
    for index in (builder, other):
        for k in range(-1, -20, -1):
            index.add(k, flip(queries[0], rng.randrange(40), rng), tag=-k)
    noted: dict[str, list[bool]] = {"compaction map": [], "adoption map": [], "adoption base": []}
    builder._delta_slot = _NotedDict(builder._delta_slot, builder, noted["compaction map"])
    other._delta_slot = _NotedDict(other._delta_slot, other, noted["adoption map"])
    old = other._snap.base
    assert old.keys is not None
    weakref.finalize(old.keys, lambda: noted["adoption base"].append(other._lock.locked()))
    del old
    builder.compact()
    assert other.refresh_base()
    gc.collect()
    assert noted == {"compaction map": [False], "adoption map": [False], "adoption base": [False]}


# ---------------------------------------------------------------- populating a new base


def _pages_mapped(a: np.ndarray) -> tuple[int, int]:
    """(pages present in this process's page tables, pages) under array `a`, read from
    /proc/self/pagemap (bit 63 of each page's entry: present). Unlike mincore, which tells
    whether the file's pages are in the page cache (a freshly written base's are), this is
    whether touching them would still fault."""
    page = pdq_base_module._PAGE
    addr = int(a.__array_interface__["data"][0])
    first, last = addr // page, (addr + a.nbytes - 1) // page
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = np.frombuffer(f.read((last - first + 1) * 8), np.uint64)
    present = int(np.count_nonzero(entries >> np.uint64(63)))
    return present, last - first + 1


def _arrays(base: Base) -> list[np.ndarray]:
    arrays = (base.keys, base.codes, base.postings, base.offsets, base.head, base.tail)
    return [a for a in arrays if a is not None and a.nbytes]


needs_pagemap = pytest.mark.skipif(
    not Path("/proc/self/pagemap").exists(), reason="reads page residency from Linux's pagemap"
)


def _residency_at_swap(index: PDQIndex, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Records, when `index` swaps a base in (`_take`), how much of each of its arrays is
    mapped: nobody has queried the new base yet, so only populating maps it."""
    seen: list[tuple[int, int]] = []
    take = PDQIndex._take

    def recording_take(self: PDQIndex, stage: PDQIndex) -> Any:
        if self is index:
            seen.extend(_pages_mapped(a) for a in _arrays(stage._snap.base))
        return take(self, stage)

    monkeypatch.setattr(PDQIndex, "_take", recording_take)
    return seen


@needs_pagemap
@pytest.mark.parametrize("layout", ["multi-index", "compact"])
def test_a_compaction_maps_the_whole_new_base_before_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """At 100M codes the first queries on a new base faulted it in (0.27-0.66 s each); the
    compaction now populates the new mapping on its own thread before swapping it in."""
    entries, queries = planted_data(20_000, 2, seed=41)
    index = _index_of(entries, path=tmp_path / "pdq.pdqbase", min_delta=10**9, layout=layout)
    index.add(-1, queries[0])
    entries[-1] = queries[0]
    seen = _residency_at_swap(index, monkeypatch)
    index.compact()
    assert len(seen) == len(_arrays(index._snap.base)) and seen
    assert all(present == pages for present, pages in seen), seen
    _check(index, entries, queries)


@needs_pagemap
def test_adopting_a_base_maps_it_before_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker adopting a base another one compacted maps the file afresh: it populates it
    too, on the adopting thread."""
    entries, queries = planted_data(20_000, 2, seed=43)
    path = tmp_path / "pdq.pdqbase"
    builder = _index_of(entries, path=path, min_delta=10**9, tag=1)
    adopter = PDQIndex(path=path, min_delta=10**9)
    builder.add(-1, queries[0], tag=2)
    adopter.add(-1, queries[0], tag=2)
    entries[-1] = queries[0]
    builder.compact()
    seen = _residency_at_swap(adopter, monkeypatch)
    assert adopter.refresh_base()
    assert seen and all(present == pages for present, pages in seen), seen
    assert adopter._snap.base.file_id == builder._snap.base.file_id
    _check(adopter, entries, queries)


def _failing_madvise(code: int, calls: list[tuple[int, int, int]]) -> Any:
    """A libc madvise that fails with errno `code`, as a kernel without the advice does."""

    def madvise(addr: int, length: int, advice: int) -> int:
        calls.append((addr, length, advice))
        ctypes.set_errno(code)
        return -1

    return madvise


@needs_pagemap
@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS])
def test_without_madv_populate_read_the_pages_are_touched_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Before Linux 5.14 madvise refuses MADV_POPULATE_READ (EINVAL; ENOSYS where there is no
    madvise): populating falls back to reading a byte a page, asks the kernel only once, and
    raises nothing."""
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(pdq_base_module, "_libc_madvise", _failing_madvise(code, calls))
    monkeypatch.setattr(pdq_base_module, "_populate_read_works", None)
    monkeypatch.setattr(pdq_base_module, "_POPULATE_SLICE", 64 << 10)  # many slices
    entries, queries = planted_data(20_000, 2, seed=45)
    index = _index_of(entries, path=tmp_path / "pdq.pdqbase", min_delta=10**9)
    index.add(-1, queries[0])
    entries[-1] = queries[0]
    seen = _residency_at_swap(index, monkeypatch)
    index.compact()
    assert [advice for _a, _l, advice in calls] == [22]  # asked once, then not again
    assert seen and all(present == pages for present, pages in seen), seen
    assert pdq_base_module._populate_read_works is False
    assert index._snap.base.populate() == "touch"
    _check(index, entries, queries)
    # Not Linux (no libc madvise at all): touched too.
    monkeypatch.setattr(pdq_base_module, "_libc_madvise", None)
    assert index._snap.base.populate() == "touch"


def test_populating_advises_exactly_each_array_a_slice_at_a_time_and_can_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The madvise calls cover each array's pages, page-aligned, in slices; `stop` is asked
    between slices. An in-memory base has nothing to populate; another error leaves the
    pages to the queries without raising."""
    real = pdq_base_module._libc_madvise
    if real is None:
        pytest.skip("no libc madvise here")
    calls: list[tuple[int, int, int]] = []

    def recording(addr: int, length: int, advice: int) -> int:
        calls.append((addr, length, advice))
        result: int = real(addr, length, advice)
        return result

    slice_ = 64 << 10
    monkeypatch.setattr(pdq_base_module, "_libc_madvise", recording)
    monkeypatch.setattr(pdq_base_module, "_POPULATE_SLICE", slice_)
    monkeypatch.setattr(pdq_base_module, "_populate_read_works", None)
    entries, _queries = planted_data(20_000, 0, seed=47)
    index = _index_of(entries, path=tmp_path / "pdq.pdqbase")
    base = index._snap.base
    assert base.populate() == "madvise"
    page = pdq_base_module._PAGE
    expected = []
    for a in _arrays(base):
        start = int(a.__array_interface__["data"][0])
        aligned = start - start % page
        end = start + a.nbytes
        expected += [(lo, min(end, lo + slice_) - lo, 22) for lo in range(aligned, end, slice_)]
    assert calls == expected
    assert len(calls) > len(_arrays(base))  # more than one slice for the larger arrays

    calls.clear()
    asked = []
    assert base.populate(stop=lambda: len(asked.append(1) or asked) > 3) == "stopped"
    assert len(calls) == 3

    calls.clear()
    in_memory = PDQIndex.from_arrays(np.array([1], np.int64), np.zeros((1, 32), np.uint8))
    assert in_memory._snap.base.populate() == "none"
    assert calls == []

    # EFAULT (say): not "unsupported", so no fallback and no error; the next call asks again.
    monkeypatch.setattr(pdq_base_module, "_libc_madvise", _failing_madvise(errno.EFAULT, calls))
    assert base.populate() == "none"
    assert len(calls) == 1


def test_a_build_counts_chunk_values_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`np.bincount` holds the GIL over its whole input (111 ms for 100M values, once per chunk
    of a build, which a query on another thread waited out): a build counts in slices, and the
    offsets are those of counting all at once."""
    calls: list[int] = []
    real_bincount = np.bincount

    def spy(values: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(values.shape[0])
        return real_bincount(values, *args, **kwargs)

    monkeypatch.setattr(pdq_base_module, "_COUNT_SLICE", 1000, raising=False)
    monkeypatch.setattr(pdq_base_module.np, "bincount", spy)
    rng = np.random.default_rng(7)
    n = 4321
    codes = rng.integers(0, 2**63, (n, 4), dtype=np.uint64)
    postings = np.empty(pdq_base_module.CHUNKS * n, dtype=np.uint32)
    offsets = np.empty(pdq_base_module.CHUNKS * pdq_base_module.OFFSETS_PER_CHUNK, dtype=np.int64)
    pdq_base_module._fill_postings(codes, postings, offsets)
    assert calls and max(calls) <= 1000, calls
    halves = codes.view(np.uint16)
    per_chunk = pdq_base_module.OFFSETS_PER_CHUNK
    for c in range(pdq_base_module.CHUNKS):
        counts = real_bincount(halves[:, c], minlength=pdq_base_module.CHUNK_VALUES)
        expected = c * n + np.concatenate(([0], np.cumsum(counts)))
        assert np.array_equal(offsets[c * per_chunk : (c + 1) * per_chunk], expected)
        got = halves[postings[c * n : (c + 1) * n], c]
        assert np.all(got[:-1] <= got[1:])  # each chunk's postings in value order
