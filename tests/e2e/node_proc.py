"""A real `signet serve` process on loopback for end-to-end tests (SQLite in a temp dir).

Also tells which worker process answered a connection, from /proc (Linux), so a test can show
that its requests reached every worker rather than assume it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
SIGNET = str(BIN / "signet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeProc:
    url: str
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def create_key(self, scopes: str = "submit,match,read") -> str:
        out = subprocess.run(
            [SIGNET, "api-keys", "create", "--name", "e2e", "--scopes", scopes],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    def signet(
        self, *args: str, key: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a client verb of the CLI against this node (URL and key from the environment)."""
        env = {**self.env, "SIGNET_URL": self.url, "SIGNET_API_KEY": key}
        return subprocess.run(
            [SIGNET, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def worker_pids(self) -> set[int]:
        """Processes whose parent is the server (uvicorn's workers, when there are several)."""
        pids = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != self.proc.pid:
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            # multiprocessing's resource tracker is a child too, but serves no requests.
            if b"resource_tracker" not in cmdline:
                pids.add(int(entry))
        return pids or {self.proc.pid}

    def post_fresh(self, path: str, body: Any, key: str) -> tuple[int, Any, int | None]:
        """POST on a new connection; (status, JSON body, pid of the worker that accepted it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(
                "POST",
                path,
                body=json.dumps(body),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            data = json.loads(resp.read())
            pid = _pid_holding(self.port, conn.sock.getsockname()[1], self.worker_pids())
            return resp.status, data, pid
        finally:
            conn.close()


def _pid_holding(server_port: int, client_port: int, pids: set[int]) -> int | None:
    """The pid among `pids` holding the server end of the connection from `client_port`."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote = f[1], f[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                inode = f[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


@contextmanager
def serve_process(
    env: dict[str, str], log: Path, *args: str, signet: str = SIGNET
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `signet serve ARGS` with `env` until /healthz answers; stop its process group after.
    `signet`: another installation's command (the wheel test)."""
    with serve_processes([(env, log)], *args, signet=signet) as procs:
        yield procs[0]


@contextmanager
def serve_processes(
    hosts: list[tuple[dict[str, str], Path]], *args: str, signet: str = SIGNET
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`serve_process` for several (env, log) at once: every process is started before the
    first is waited for (hosts started together)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for env, log in hosts:
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [signet, "serve", *args],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its process group (workers too) can be stopped
                    )
                )
        for proc, (env, log) in zip(procs, hosts, strict=True):
            _wait_healthy(proc, f"http://127.0.0.1:{env['SIGNET_PORT']}", log)
        yield procs
    finally:
        for proc in procs:
            _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90  # generous: the 2-core test machine is often loaded
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("node did not start:\n" + log.read_text()[-2000:])
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextmanager
def running_node(
    tmp_path: Path,
    *,
    workers: int = 1,
    origin: str = "e2e.example",
    extra_env: dict[str, str] | None = None,
) -> Iterator[NodeProc]:
    port = free_port()
    env = {
        **os.environ,
        "SIGNET_DATA_DIR": str(tmp_path / "data"),
        "SIGNET_PORT": str(port),
        "SIGNET_HOST": "127.0.0.1",
        "SIGNET_ORIGIN": origin,
        "SIGNET_BACKGROUND": "false",
        "SIGNET_LOG_LEVEL": "warning",
    }
    for name in ("SIGNET_DATABASE_URL", "SIGNET_URL", "SIGNET_API_KEY"):
        env.pop(name, None)
    env.update(extra_env or {})
    log = tmp_path / "serve.log"
    with serve_process(env, log, "--workers", str(workers)) as proc:
        node = NodeProc(f"http://127.0.0.1:{port}", port, env, proc, log)
        if workers > 1:  # wait until every worker has started and loaded its index
            deadline = time.monotonic() + 30
            while len(node.worker_pids()) < workers and time.monotonic() < deadline:
                time.sleep(0.1)
        yield node
