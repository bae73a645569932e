"""The built wheel is a node: installed into a fresh venv, away from the source tree, it
migrates its database and serves. A wheel without the migrations (the old packaging) fails here
with `Path doesn't exist: .../site-packages/migrations`.

Slow-ish (a wheel build and a normal `pip install`, from pip's warm cache), so one test does it
all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import httpx
import pytest

from .node_proc import free_port, serve_process

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    """The distribution a PEP 508 requirement names."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _canonical(match.group(1))


def _requirements() -> tuple[set[str], set[str]]:
    """pyproject's runtime dependencies and the dev extra's packages (tests, linters, the
    test-only libraries), none of which serving needs."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    return runtime, {_name(r) for r in project["optional-dependencies"]["dev"]}


def _wheel_requires(wheel: Path) -> set[str]:
    """What installing the wheel installs: its Requires-Dist entries outside any extra."""
    import zipfile
    from email.parser import Parser

    with zipfile.ZipFile(wheel) as z:
        (metadata,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(z.read(metadata).decode())
    return {_name(r) for r in message.get_all("Requires-Dist", []) if "extra ==" not in r}


def test_wheel_installs_migrates_and_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        dist,
        REPO,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("signet-*.whl")

    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "app/migrations/env.py" in names
    assert "app/migrations/script.py.mako" in names
    assert any(n.startswith("app/migrations/versions/0001_") for n in names)
    assert not any(n.startswith(("tests/", "migrations/")) for n in names)
    # Every file of the package in the repository is in the wheel (templates, assets too).
    repo_files = {
        str(p.relative_to(REPO))
        for p in (REPO / "app").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    missing = {f for f in repo_files if f not in names}
    assert not missing, missing

    # Nothing from the source tree or the running venv: a PYTHONPATH naming the repository
    # (as a developer's shell may) puts its signet.egg-info on pip's path, and pip then skips
    # installing the wheel as "already satisfied".
    isolated = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SIGNET_", "PYTHON", "VIRTUAL_ENV"))
    }
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    pip = target / "bin" / "pip"
    _run(pip, "install", "-q", wheel, cwd=tmp_path, env=isolated)
    # Serving needs no dev dependency: the wheel requires exactly pyproject's dependencies,
    # none of the dev extra's own, and installing it brought none of those along. (This was a
    # substring test for "faiss==", which no listing holds: faiss-cpu is a runtime dependency.)
    runtime, dev = _requirements()
    assert {"pytest", "mypy", "schemathesis", "threatexchange", "playwright"} <= dev
    required = _wheel_requires(wheel)
    assert required == runtime, required ^ runtime
    assert not required & dev, required & dev
    listed = _run(pip, "list", "--format=freeze", cwd=tmp_path, env=isolated)
    installed = {_canonical(line.split("==")[0]) for line in listed.splitlines() if "==" in line}
    assert "faiss-cpu" in installed  # the listing is read right: a runtime dependency is there
    # setuptools: a Python 3.11 venv has it from ensurepip, whatever the wheel requires.
    assert not (installed & dev) - {"setuptools"}, installed & dev

    # Run from a directory that is not the repository, so nothing can come from the source tree.
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = dict(isolated)
    env.update(
        SIGNET_DATA_DIR=str(home / "data"),
        SIGNET_PORT=str(port),
        SIGNET_ORIGIN="wheel.example",
        SIGNET_BACKGROUND="false",
        SIGNET_LOG_LEVEL="warning",
        PATH=f"{target / 'bin'}:{env.get('PATH', '')}",
    )
    probe = _run(
        target / "bin" / "python",
        "-c",
        "import app.storage.migrate as m; print(m.MIGRATIONS_DIR)",
        cwd=home,
        env=env,
    )
    assert probe.strip().startswith(str(target)), probe
    with serve_process(env, tmp_path / "serve.log", signet=str(target / "bin" / "signet")):
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        ready = httpx.get(url + "/readyz", timeout=5).json()
        assert ready["checks"]["migrations"] == "ok", ready
        docs = httpx.get(url + "/docs", timeout=5)
        assert docs.status_code == 200
    assert (home / "data" / "signet.db").is_file()
