"""Meta's Hasher-Matcher-Actioner (HMA 2.0), unmodified, following live Signet nodes.

HMA runs from the snapshot in `../shared/thirdparty/hasher-matcher-actioner` (or
`SIGNET_HMA_SNAPSHOT`), installed into a virtual environment of its own (cached under
`~/.cache/signet-tests`, keyed by the snapshot), on PostgreSQL, served by gunicorn with its
reference `development_omm_config.py`, unmodified; the only addition is the `signet_tx` exchange
type, appended to the store the reference config builds. Settings go through HMA's own `OMM_*`
environment overrides (database, short task intervals so the test need not wait minutes).

Everything is checked through HMA's own HTTP API, as a platform would: exchanges and credentials
created with the curator API (config fields posted as strings, as HMA's UI does), fetching and
indexing by HMA's own background tasks, matching with `/m/lookup`.

If the snapshot is present this test runs and fails loudly when HMA cannot be installed or
started; it is skipped only when there is no snapshot on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, scratch_pg_database
from tests.e2e.node_proc import NodeProc, free_port, running_node

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _snapshot() -> Path | None:
    candidates = [
        os.environ.get("SIGNET_HMA_SNAPSHOT"),
        REPO.parent / "shared" / "thirdparty" / "hasher-matcher-actioner",
        Path("/work/shared/thirdparty/hasher-matcher-actioner"),
    ]
    for c in candidates:
        if c and (Path(c) / "src" / "OpenMediaMatch" / "app.py").is_file():
            return Path(c)
    return None


SNAPSHOT = _snapshot()
# What signet_tx needs besides threatexchange (which HMA already has): the crypto of `app`.
SIGNET_TX_DEPS = ["pynacl>=1.5", "rfc8785>=0.1.4", "orjson>=3.10"]


def _hma_python() -> Path:
    """HMA's own virtual environment: built once per snapshot, reused across runs."""
    assert SNAPSHOT is not None
    digest = hashlib.sha256(
        (SNAPSHOT / "pyproject.toml").read_bytes()
        + (SNAPSHOT / "version.txt").read_bytes()
        + " ".join(SIGNET_TX_DEPS).encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("SIGNET_TEST_CACHE", Path.home() / ".cache" / "signet-tests"))
    venv = cache / f"hma-{digest}"
    python = venv / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"hma-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers build it once between them
        if (venv / ".complete").exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        # The snapshot is read-only and packs no modules (HMA runs from src/): install its
        # dependencies from a copy of its project file, never building inside it.
        project = cache / f"hma-{digest}-project"
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(SNAPSHOT / name, project / name)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"{project}[all]", *SIGNET_TX_DEPS],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            pytest.fail(f"installing HMA from {SNAPSHOT} failed:\n{done.stderr[-3000:]}")
        (venv / ".complete").touch()
    return python


class HMA:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.http = httpx.Client(base_url=url, timeout=30)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise AssertionError(f"HMA {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def lookup(self, signal_type: str, value: str) -> dict[str, list[Any]]:
        """Banks whose content matches, as HMA's matcher answers its clients."""
        out: dict[str, list[Any]] = self.call(
            "GET", "/m/lookup", params={"signal_type": signal_type, "signal": value}
        )
        return {bank: hits for bank, hits in out.items() if hits}


@contextmanager
def running_hma(tmp_path: Path) -> Iterator[HMA]:
    if SNAPSHOT is None:
        pytest.skip("HMA snapshot not on this machine (set SIGNET_HMA_SNAPSHOT)")
    if PG_ADMIN_URL is None:
        pytest.fail("HMA needs PostgreSQL: set SIGNET_TEST_POSTGRES_URL")
    with (
        scratch_pg_database(f"signet_hma_{os.getpid()}") as db_url,
        _hma_on(tmp_path, db_url) as hma,
    ):
        yield hma


@contextmanager
def _hma_on(tmp_path: Path, db_url: str) -> Iterator[HMA]:
    """HMA's app under gunicorn, on the empty PostgreSQL database `db_url` (migrated first)."""
    python = _hma_python()
    reference = SNAPSHOT / "reference_omm_configs" / "development_omm_config.py"
    config = tmp_path / "omm_config.py"
    config.write_text(
        "# HMA's reference development config, unmodified, plus the signet_tx exchange type.\n"
        f"_REFERENCE = {str(reference)!r}\n"
        "exec(compile(open(_REFERENCE).read(), _REFERENCE, 'exec'))\n"
        "from signet_tx import SignetSignalExchangeAPI\n"
        "STORAGE_IFACE_INSTANCE = DefaultOMMStore(\n"
        "    signal_types=list(STORAGE_IFACE_INSTANCE.signal_types.values()),\n"
        "    content_types=list(STORAGE_IFACE_INSTANCE.content_types.values()),\n"
        "    exchange_types=[*STORAGE_IFACE_INSTANCE.exchange_types.values(),\n"
        "                    SignetSignalExchangeAPI],\n"
        ")\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "OMM_"))},
        "PYTHONPATH": f"{SNAPSHOT / 'src'}{os.pathsep}{REPO}",
        "OMM_CONFIG": str(config),
        "OMM_DATABASE_URI": "postgresql+psycopg2://" + db_url.split("://", 1)[1],
        # HMA's own overrides of its task intervals (defaults: fetch 240 s, index 60 s).
        "OMM_TASK_FETCHER_INTERVAL_SECONDS": "1",
        "OMM_TASK_INDEXER_INTERVAL_SECONDS": "1",
        "OMM_TASK_INDEX_CACHE_INTERVAL_SECONDS": "1",
    }
    bin_dir = python.parent
    migrate = subprocess.run(
        [
            str(bin_dir / "flask"),
            "--app",
            "OpenMediaMatch.app",
            "db",
            "upgrade",
            "--directory",
            str(SNAPSHOT / "src" / "OpenMediaMatch" / "migrations"),
        ],
        env={**env, "MIGRATION_COMMAND": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if migrate.returncode != 0:
        pytest.fail(f"HMA migration failed:\n{migrate.stderr[-3000:]}")
    port = free_port()
    log = tmp_path / "hma.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(bin_dir / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "OpenMediaMatch.app:create_app()",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/status", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("HMA did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        yield HMA(url, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)


def _eventually(what: str, check: Callable[[], bool], hma: HMA, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"HMA never reached: {what}\n" + hma.log.read_text()[-3000:])
        time.sleep(0.5)


def _pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _flip(hex_value: str, bits: int, rng: random.Random) -> str:
    value = int(hex_value, 16)
    for bit in rng.sample(range(256), bits):
        value ^= 1 << bit
    return f"{value:064x}"


def _submit(node: NodeProc, key: str, value: str, **extra: Any) -> str:
    body = {
        "type": "pdq",
        "value": value,
        "quality": 100,
        "categories": ["ncii"],
        "opinion": "positive",
        "audience": {"tlp": "clear"},
        **extra,
    }
    r = httpx.post(
        node.url + "/v1/signals",
        json={"signals": [body]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    r.raise_for_status()
    (item,) = r.json()["items"]
    assert item["status"] == "created", item
    return str(item["id"])


def _retract(node: NodeProc, key: str, uid: str) -> None:
    httpx.post(
        f"{node.url}/v1/signals/{uid}/retract",
        json={"reason": "withdrawn"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ).raise_for_status()


def _vkey(node: NodeProc) -> str:
    return str(httpx.get(node.url + "/.well-known/signet", timeout=10).json()["verifier_key"])


def test_hma_follows_two_nodes_through_both_routes(tmp_path: Path) -> None:
    rng = random.Random(1802)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_node(tmp_path / "a", origin="a.example") as a,
        running_node(tmp_path / "b", origin="b.example") as b,
        running_hma(tmp_path) as hma,
    ):
        platform_a = a.create_key("submit,read")
        platform_b = b.create_key("submit,read")
        feed_a = a.create_key("feed")
        feed_b = b.create_key("feed")

        # Before HMA follows anything: one hash that stays, one withdrawn at once. HMA's first
        # walk then ends in the second of that withdrawal (what planted it before the fix).
        kept = _pdq(rng)
        _submit(a, platform_a, kept)
        # A few more: threatexchange 1.2.17's PDQ index never matches once reloaded while it
        # holds a single distinct hash (upstream issue #1318); no real bank is that small.
        for _ in range(3):
            _submit(a, platform_a, _pdq(rng))
        gone_early = _pdq(rng)
        _retract(a, platform_a, _submit(a, platform_a, gone_early))

        # Credentials per exchange type, as HMA keeps them; one signet credential names a key
        # per node. Exchange configs posted as strings, as HMA's UI posts them.
        hma.call(
            "POST",
            "/c/exchanges/api/stop_ncii",
            json={
                "credential_json": {
                    "fetch_function_key": feed_a,
                    "subscription_key": feed_a,
                    "base_url_override": f"{a.url}/stopncii/v1",
                }
            },
        )
        hma.call(
            "POST",
            "/c/exchanges/api/signet",
            json={"credential_json": {"api_key": f"{a.url}={feed_a},{b.url}={feed_b}"}},
        )
        hma.call("POST", "/c/exchanges", json={"bank": "A_STOPNCII", "api": "stop_ncii"})
        for bank, node in (("A_SIGNET", a), ("B_SIGNET", b)):
            hma.call(
                "POST",
                "/c/exchanges",
                json={
                    "bank": bank,
                    "api": "signet",
                    "api_json": {"node_url": node.url, "verifier_keys": _vkey(node)},
                },
            )

        # Fetch and exact match, through both routes.
        _eventually(
            "the kept hash in both A banks",
            lambda: set(hma.lookup("pdq", kept)) == {"A_STOPNCII", "A_SIGNET"},
            hma,
        )
        # Near copy (5 bits) matches; 48 bits away and an unrelated hash do not.
        assert set(hma.lookup("pdq", _flip(kept, 5, rng))) == {"A_STOPNCII", "A_SIGNET"}
        assert hma.lookup("pdq", _flip(kept, 48, rng)) == {}
        assert hma.lookup("pdq", _pdq(rng)) == {}

        # A second node, followed with its own key.
        from_b = _pdq(rng)
        _submit(b, platform_b, from_b)
        _eventually(
            "B's hash in B_SIGNET", lambda: set(hma.lookup("pdq", from_b)) == {"B_SIGNET"}, hma
        )

        # Later changes arrive by resumed walks; the hash withdrawn before HMA ever saw it never
        # appears in any bank, however many resumes pass.
        later = _pdq(rng)
        _submit(a, platform_a, later)
        _eventually(
            "a later hash in both A banks",
            lambda: set(hma.lookup("pdq", later)) == {"A_STOPNCII", "A_SIGNET"},
            hma,
        )
        assert hma.lookup("pdq", gone_early) == {}

        # Retraction: the signed route deletes. The StopNCII route sends the withdrawal, but
        # threatexchange 1.2.17's client keeps a withdrawn hash (documented upstream bug).
        victim = _pdq(rng)
        victim_id = _submit(a, platform_a, victim)
        _eventually(
            "the victim in both A banks",
            lambda: set(hma.lookup("pdq", victim)) == {"A_STOPNCII", "A_SIGNET"},
            hma,
        )
        _retract(a, platform_a, victim_id)
        _eventually(
            "the retraction applied by signet_tx",
            lambda: "A_SIGNET" not in hma.lookup("pdq", victim),
            hma,
        )
        assert set(hma.lookup("pdq", victim)) == {"A_STOPNCII"}  # the upstream client bug

        # Expiry: gone from the signed route's bank at the first fetch after valid_until.
        # Signed times carry whole seconds (the node truncates), so ask for a whole second.
        until = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
        short = _pdq(rng)
        _submit(a, platform_a, short, valid_until=until.isoformat().replace("+00:00", "Z"))
        _eventually("the short-lived hash", lambda: "A_SIGNET" in hma.lookup("pdq", short), hma)
        _eventually(
            "the expired hash removed", lambda: "A_SIGNET" not in hma.lookup("pdq", short), hma
        )
        assert datetime.now(UTC) >= until
        # B's bank was never touched by A's changes.
        assert set(hma.lookup("pdq", from_b)) == {"B_SIGNET"}
