"""Operator CLI: reading creates nothing, another node's data is refused naming what was found,
every failure exits non-zero with one line, listings are whole when piped and have --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.services import apikeys
from app.services import log as exchange_log
from app.services.node import Node
from app.settings import Settings

runner = CliRunner()


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "SIGNET_DATABASE_URL": settings.database_url,
        "SIGNET_DATA_DIR": str(settings.data_dir),
        "SIGNET_ORIGIN": settings.origin,
        "SIGNET_BACKGROUND": "false",
        "COLUMNS": "400",
        **extra,
    }


def test_reading_verbs_create_nothing_in_an_empty_directory(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    env = {"SIGNET_DATA_DIR": str(data), "SIGNET_DATABASE_URL": "", "COLUMNS": "400"}
    for args in (
        ["key", "show"],
        ["api-keys", "list"],
        ["api-keys", "create", "--name", "x", "--scopes", "admin"],
        ["peers", "list"],
    ):
        r = runner.invoke(cli, args, env=env)
        assert r.exit_code == 2, (args, r.output)
        assert "no Signet node here" in r.output and str(data) in r.output, r.output
        assert "SIGNET_DATA_DIR" in r.output
        assert not data.exists(), args  # no data dir, no database, no key file made


def test_key_show_and_api_keys_refuse_another_nodes_database(
    node: Node, settings: Settings
) -> None:
    exchange_log.log_config_if_changed(node)  # what a start logs: origin and verifier key
    ok = runner.invoke(cli, ["key", "show"], env=env_for(settings))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == node.verifier_key
    # The same data dir with the default origin (SIGNET_ORIGIN forgotten): refused, naming both.
    wrong = runner.invoke(
        cli, ["key", "show"], env=env_for(settings, SIGNET_ORIGIN="other.example")
    )
    assert wrong.exit_code == 2
    assert "'test.example'" in wrong.output and "'other.example'" in wrong.output
    assert "SIGNET_ORIGIN=test.example" in wrong.output
    assert node.verifier_key not in wrong.stdout
    made = runner.invoke(
        cli,
        ["api-keys", "create", "--name", "x", "--scopes", "admin"],
        env=env_for(settings, SIGNET_ORIGIN="other.example"),
    )
    assert made.exit_code == 2 and not made.stdout.strip()


def test_key_file_of_another_node_is_refused(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    exchange_log.log_config_if_changed(node)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    from app.crypto.keys import NodeKey

    NodeKey.load_or_create(other_dir / "node.key")
    r = runner.invoke(
        cli, ["api-keys", "list"], env=env_for(settings, SIGNET_DATA_DIR=str(other_dir))
    )
    assert r.exit_code == 2
    assert "is not the key of the node" in r.output


def test_listings_are_whole_when_piped_and_have_json(node: Node, settings: Settings) -> None:
    long_name = (
        "a-platform-integration-with-a-name-far-longer-than-any-terminal-column-x" + "y" * 30
    )
    apikeys.create(node, long_name, ["submit", "match"], False)
    r = runner.invoke(cli, ["api-keys", "list"], env={**env_for(settings), "COLUMNS": "60"})
    assert r.exit_code == 0, r.output
    assert long_name in r.stdout  # not cut with an ellipsis when not on a terminal
    lines = r.stdout.strip().splitlines()
    assert lines[0].split("\t")[:2] == ["id", "name"]
    j = runner.invoke(cli, ["api-keys", "list", "--json"], env=env_for(settings))
    assert j.exit_code == 0
    (row,) = [json.loads(line) for line in j.stdout.splitlines()]
    assert row["name"] == long_name and sorted(row["scopes"]) == ["match", "submit"]
    p = runner.invoke(cli, ["peers", "list", "--json"], env=env_for(settings))
    assert p.exit_code == 0 and p.stdout == ""


def test_hash_match_against_an_unreachable_node_exits_non_zero(tmp_path: Path) -> None:
    f = tmp_path / "file.bin"
    f.write_bytes(b"synthetic test bytes")
    r = runner.invoke(
        cli,
        ["hash", str(f), "--match", "--types", "md5,sha256", "--url", "http://127.0.0.1:9"],
        env={"COLUMNS": "400", "SIGNET_API_KEY": "x"},
    )
    assert r.exit_code == 1, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not accepted by the node" in errors[0], r.stderr


@pytest.mark.parametrize("args", [[], ["hash"], ["peers", "list"], ["audit", "verify"]])
def test_help_shows_no_bool_type_for_flags(args: list[str]) -> None:
    r = runner.invoke(cli, [*args, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "--help" in r.output and "<bool>" not in r.output


def test_db_upgrade_creates_the_node(tmp_path: Path) -> None:
    data = tmp_path / "new"
    env = {"SIGNET_DATA_DIR": str(data), "SIGNET_DATABASE_URL": "", "COLUMNS": "400"}
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    assert (data / "node.key").is_file() and (data / "signet.db").is_file()
    r = runner.invoke(cli, ["key", "show"], env=env)
    assert r.exit_code == 0 and r.stdout.startswith("signet.localhost+")


def test_a_host_without_the_node_key_is_warned_before_making_its_own(
    node: Node, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second host of a node (docs/scaling.md) started before its key file was copied made a
    key of its own, in silence, and signed the node's log with it."""
    from app.services.node import open_node

    exchange_log.log_config_if_changed(node)  # the first host's start
    other_host = settings.model_copy(update={"data_dir": tmp_path / "host2"})
    with caplog.at_level("WARNING", logger="signet.node"):
        second = open_node(other_host)
    second.db.dispose()
    warned = [r.getMessage() for r in caplog.records if "creating a NEW key" in r.getMessage()]
    assert len(warned) == 1 and node.verifier_key in warned[0], caplog.text
    assert "copy the node's key file" in warned[0]

    # A database with no config entry yet is a new node's: its first key, nothing to warn of.
    caplog.clear()
    fresh = settings.model_copy(
        update={"data_dir": tmp_path / "fresh", "database_url": f"sqlite:///{tmp_path}/f.db"}
    )
    with caplog.at_level("WARNING", logger="signet.node"):
        open_node(fresh).db.dispose()
    assert not any("creating a NEW key" in r.getMessage() for r in caplog.records)


def test_keyless_hosts_started_together_end_as_if_one_started_after_the_other(
    node: Node, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two hosts started at once on a new database, each with an empty data dir: each looked
    for a logged key before making its own (`open_node`), found none, and both logged theirs,
    the second in silence. The check is now also made where the key is logged, under the
    sequencer lock: the host that logs first has the node's key, the other is warned."""
    from app.services import keys
    from app.services.node import open_node

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    second = open_node(settings.model_copy(update={"data_dir": tmp_path / "host2"}))
    try:
        with caplog.at_level("WARNING", logger="signet.node"):
            # `node` made its key a moment ago too: neither has logged one yet.
            assert exchange_log.log_config_if_changed(node) is not None
            assert warnings() == []
            assert exchange_log.log_config_if_changed(second) is not None
        warned = warnings()
        assert len(warned) == 1, caplog.text
        assert second.verifier_key in warned[0] and node.verifier_key in warned[0]
        assert "copy the node's key file" in warned[0]

        # The first host restarts after the second: warned in its turn, as the log's key
        # changes again (every start of either host, until one has the other's key file).
        caplog.clear()
        with caplog.at_level("WARNING", logger="signet.node"):
            assert exchange_log.log_config_if_changed(node) is not None
        assert len(warnings()) == 1 and node.verifier_key in warnings()[0]

        # A key rotation is no other host: the key it rotated from is its own.
        caplog.clear()
        keys.rotate(node)
        rotated = open_node(settings)
        try:
            with caplog.at_level("WARNING", logger="signet.node"):
                assert exchange_log.log_config_if_changed(rotated) is not None
            assert warnings() == []
        finally:
            rotated.db.dispose()
    finally:
        second.db.dispose()


def test_serve_makes_a_new_data_dir_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`signet serve` made the data dir as the parent of its metrics dir, with the default mode
    (0755), before the node made it owner-only: every first start of a node warned "data
    directory ... was open to other users; set to 0700"."""
    import os

    from app.cli import _prepare_multiprocess

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # it sets PROMETHEUS_MULTIPROC_DIR
    data = tmp_path / "new" / "data"
    _prepare_multiprocess(data)
    assert (data / "prometheus").is_dir()
    assert data.stat().st_mode & 0o077 == 0, oct(data.stat().st_mode)
