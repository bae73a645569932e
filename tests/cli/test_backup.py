"""Backup and restore: the restored node's log verifies against a checkpoint taken (and
audited) before the backup, and restore never overwrites a node."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.audit.run import audit_export
from app.cli import app as cli
from app.services import log as exchange_log
from app.services import signals
from app.services.node import Node, open_node
from app.settings import load_settings

runner = CliRunner()
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def test_backup_restore_log_verifies_against_earlier_checkpoint(tmp_path: Path) -> None:
    settings = load_settings(origin="bk.example", data_dir=tmp_path / "data", background=False)
    node: Node = open_node(settings)
    signals.submit_batch(
        node, [{"type": "pdq", "value": PDQ, "quality": 100, "categories": ["csam"]}], None
    )
    exchange_log.export(node, tmp_path / "before")
    state = tmp_path / "state.json"
    pinned = node.key.verifier(node.origin)
    audit_export(tmp_path / "before", pinned, state_path=state)  # remembers the checkpoint
    env = {
        "SIGNET_DATA_DIR": str(tmp_path / "data"),
        "SIGNET_ORIGIN": "bk.example",
        "SIGNET_DATABASE_URL": "",
    }
    r = runner.invoke(cli, ["backup", str(tmp_path / "bk")], env=env)
    assert r.exit_code == 0, r.output
    node.db.dispose()

    # Restoring over the live node is refused; into an empty data dir it works.
    again = runner.invoke(cli, ["restore", str(tmp_path / "bk")], env=env)
    assert again.exit_code == 2 and "already lives" in again.output
    env2 = {**env, "SIGNET_DATA_DIR": str(tmp_path / "restored")}
    r = runner.invoke(cli, ["restore", str(tmp_path / "bk")], env=env2)
    assert r.exit_code == 0, r.output
    restored = open_node(
        load_settings(origin="bk.example", data_dir=tmp_path / "restored", background=False)
    )
    try:
        assert restored.verifier_key == node.verifier_key
        exchange_log.export(restored, tmp_path / "after")
    finally:
        restored.db.dispose()
    # Consistent with the state saved before the backup (same history, possibly grown).
    report = audit_export(tmp_path / "after", pinned, state_path=state)
    assert report.size >= 1


def test_backup_on_postgres_gives_pg_dump_guidance(tmp_path: Path) -> None:
    from app.services import backup

    settings = load_settings(database_url="postgresql://u@h/db", data_dir=tmp_path)
    try:
        backup.backup(settings, tmp_path / "x")
    except Exception as exc:
        assert "pg_dump" in str(exc)
    else:
        raise AssertionError("expected guidance")
