"""Shared benchmark helpers: one-core pinning, machine description, timing, bandwidth, tables.

Import this module before numpy (or call `pin_one_core()` first thing) so BLAS/OpenMP pools
start with one thread.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def pin_one_core() -> int | None:
    """Ask thread pools for one thread and bind this process to one CPU; returns that CPU.

    The environment variables only affect pools created afterwards, hence "before numpy".
    """
    for name in _THREAD_VARS:
        os.environ.setdefault(name, "1")
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def scratch_dir(prefix: str) -> str:
    """A new temporary directory, removed when the benchmark exits (a node's data dir can
    take gigabytes, and a run leaves several)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def smaps_rollup(pid: int) -> dict[str, int]:
    """A process's /proc/PID/smaps_rollup in KiB by field (Rss, Pss, Anonymous, Shared_Clean,
    ...); empty if the process is gone. Pss counts a page shared by n processes as 1/n."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            lines = f.read().splitlines()[1:]  # the first line names the (whole) range
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines)}


def mapped_pss(pid: int, path: str) -> int:
    """KiB of a process's PSS in its mappings of the file at (absolute) `path`: the resident
    pages of that file it maps, each shared by n processes counted 1/n. 0 if it maps none."""
    total, inside = 0, False
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(None, 5)
                if not parts[0].endswith(":"):  # a mapping's first line: range perms ... path
                    inside = len(parts) == 6 and parts[5].rstrip("\n") == path
                elif inside and parts[0] == "Pss:":
                    total += int(parts[1])
    except OSError:
        return 0
    return total


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def machine_info(extra: Mapping[str, str] | None = None) -> str:
    """One line naming the machine and software the figures came from."""
    import numpy as np

    parts = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_total(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if hasattr(os, "sched_getaffinity"):
        parts["pinned to cpus"] = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    if extra:
        parts.update(extra)
    return "; ".join(f"{k}: {v}" for k, v in parts.items())


def best_time(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Best wall time of `repeat` runs of `number` calls, in seconds per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.seconds`"""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def read_bandwidth(nbytes: int = 512 * 2**20, repeat: int = 5) -> float:
    """Bytes per second one core streams from memory (best of a few numpy reductions).

    The buffer is larger than any cache, so this is the DRAM bound a full scan cannot beat.
    """
    import numpy as np

    words = np.ones(nbytes // 8, dtype=np.uint64)  # touched, so the pages are resident
    as_float = words.view(np.float64)
    readers: list[Callable[[], object]] = [
        words.max,
        lambda: np.bitwise_or.reduce(words),
        as_float.max,
    ]
    seconds = min(best_time(r, repeat=repeat) for r in readers)
    return words.nbytes / seconds


def fmt_rate(per_second: float) -> str:
    """Human figure: 1234567 -> '1.23M', 7632 -> '7.63k'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.3g}{unit}"
    return f"{per_second:.3g}"


def print_table(rows: Sequence[Mapping[str, Any]], file: Any = None) -> None:
    """Print rows (dicts sharing keys; first row fixes column order) as a markdown table."""
    out = file or sys.stdout
    if not rows:
        return
    columns = list(rows[0].keys())
    for row in rows[1:]:
        columns += [c for c in row if c not in columns]
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(
        "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |", file=out
    )
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for r in cells:
        print(
            "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |", file=out
        )
