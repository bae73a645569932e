"""The auditor against a node (through the test client) and on exports, on both databases:
a faithful log passes; an altered entry, signature or history fails naming the entry."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.audit.errors import AuditFailed
from app.audit.run import audit_export, audit_node, locate_divergence
from app.audit.tree import LeafHashes
from app.cli import app as cli
from app.crypto import merkle
from app.crypto.canonical import canonical_json
from app.crypto.checkpoint import Checkpoint, sign_checkpoint
from app.crypto.keys import NodeKey, VerifierKey
from app.crypto.records import sign_record
from app.services import keys
from app.services import log as exchange_log
from app.services.node import Node
from app.settings import Settings


def audit(client: Any, token: str, node: Node, **kw: Any) -> Any:
    return audit_node("", token, VerifierKey.parse(node.verifier_key), http=client, **kw)


@pytest.fixture
def token(make_key: Any) -> str:
    return str(make_key("audit")["Authorization"].split()[1])


def entry_index(node: Node, predicate: Any) -> int:
    with node.db.read() as s:
        rows = s.execute(text("SELECT idx, data FROM log_entry ORDER BY idx")).all()
    return next(int(i) for i, d in rows if predicate(json.loads(d)))


def set_data(node: Node, index: int, data: str) -> None:
    with node.db.engine.begin() as conn:
        conn.execute(text("UPDATE log_entry SET data = :d WHERE idx = :i"), {"d": data, "i": index})


def get_data(node: Node, index: int) -> str:
    with node.db.read() as s:
        return str(
            s.execute(text("SELECT data FROM log_entry WHERE idx = :i"), {"i": index}).one()[0]
        )


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "SIGNET_DATABASE_URL": settings.database_url,
        "SIGNET_DATA_DIR": str(settings.data_dir),
        "SIGNET_ORIGIN": settings.origin,
        "SIGNET_BACKGROUND": "false",
        "COLUMNS": "400",  # rich must not wrap the message the test looks for
    }


def test_faithful_log_passes(
    client: Any, token: str, node: Node, history: dict[str, list[str]]
) -> None:
    report = audit(client, token, node)
    assert not report.failures
    assert report.kinds["signal"] == 5 and report.kinds["retraction"] == 2
    assert report.commitments == 3  # amber + red signals, red retraction
    assert report.verified[node.origin] == 5  # 3 signals, 1 retraction, 1 feedback


def test_state_proves_the_log_only_grew(
    client: Any, token: str, node: Node, submit: Any, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    submit("clear", "red")
    exchange_log.publish_checkpoint(node)
    first = audit(client, token, node, state_path=state)
    saved = json.loads(state.read_text())
    assert saved["size"] == first.size
    audit(client, token, node, state_path=state)  # same size: equal roots suffice
    submit("green")
    exchange_log.publish_checkpoint(node)  # what the cadence loop does in a running node
    second = audit(client, token, node, state_path=state)
    assert second.size > first.size and json.loads(state.read_text())["size"] == second.size
    # A state from a different history (same size, other root) is refused.
    saved["root"] = base64.b64encode(bytes(32)).decode()
    state.write_text(json.dumps(saved))
    with pytest.raises(AuditFailed, match="consistency"):
        audit(client, token, node, state_path=state)


def test_altered_entry_is_named(
    client: Any,
    token: str,
    node: Node,
    history: dict[str, list[str]],
    settings: Settings,
    tmp_path: Path,
) -> None:
    i = entry_index(node, lambda e: e["kind"] == "retraction" and "record" in e)
    set_data(node, i, get_data(node, i).replace("mistake", "mistakE"))
    with pytest.raises(AuditFailed, match=rf"^entry {i}: .*altered") as exc:
        audit(client, token, node)
    assert exc.value.index == i
    # The same through the CLI, offline: export, then verify the export.
    runner = CliRunner()
    env = cli_env(settings)
    out = tmp_path / "export"
    r = runner.invoke(cli, ["log", "export", str(out)], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["audit", "verify-export", str(out), "--key", node.verifier_key], env=env
    )
    assert r.exit_code == 1
    assert f"entry {i}:" in r.output


def test_altered_signature_byte_is_named(
    client: Any, token: str, node: Node, history: dict[str, list[str]]
) -> None:
    i = entry_index(node, lambda e: e["kind"] == "signal" and "record" in e)
    data = json.loads(get_data(node, i))
    sig = data["record"]["signature"]
    data["record"]["signature"] = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    set_data(node, i, canonical_json(data).decode())
    with pytest.raises(AuditFailed, match=rf"^entry {i}: "):
        audit(client, token, node)


def test_export_verifies_and_cli_exit_codes(
    node: Node, history: dict[str, list[str]], settings: Settings, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = cli_env(settings)
    out = tmp_path / "export"
    assert runner.invoke(cli, ["log", "export", str(out)], env=env).exit_code == 0
    state = tmp_path / "state.json"
    args = ["audit", "verify-export", str(out), "--key", node.verifier_key, "--state", str(state)]
    r = runner.invoke(cli, args, env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"] is True
    assert runner.invoke(cli, args, env=env).exit_code == 0
    other = NodeKey.generate().verifier_key(node.origin)
    r = runner.invoke(cli, ["audit", "verify-export", str(out), "--key", other], env=env)
    assert r.exit_code == 1 and "checkpoint" in r.output
    r = runner.invoke(cli, ["audit", "verify-export", str(out), "--key", "junk"], env=env)
    assert r.exit_code == 2


# --- a node that rewrites its whole log and re-signs it -----------------------------------------


def write_export(directory: Path, key: NodeKey, origin: str, entries: list[dict[str, Any]]) -> None:
    """An export as a dishonest node would make it: consistent leaves, a fresh signature."""
    directory.mkdir(parents=True, exist_ok=True)
    tree = merkle.MerkleTree(canonical_json(e) for e in entries)
    note = sign_checkpoint(Checkpoint(origin, tree.size, tree.root()), key)
    (directory / "checkpoint").write_text(note)
    with (directory / "entries.jsonl").open("w") as fh:
        for i, e in enumerate(entries):
            fh.write(json.dumps({"index": i, "entry": e}) + "\n")


def signal_entry(key: NodeKey, origin: str, n: int) -> dict[str, Any]:
    record = sign_record({"kind": "signal", "id": f"s{n}", "value": "x"}, key, origin)
    return {"kind": "signal", "time": "2026-01-01T00:00:00Z", "record": record}


def test_resigned_forgery_is_caught(tmp_path: Path) -> None:
    key, origin = NodeKey.generate(), "forger.example"
    pinned = key.verifier(origin)
    entries = [signal_entry(key, origin, n) for n in range(6)]
    write_export(tmp_path / "a", key, origin, entries)
    state = tmp_path / "state.json"
    audit_export(tmp_path / "a", pinned, state_path=state)
    # Rewrite entry 2 with a bad signature, rebuild the tree, sign a new checkpoint.
    forged = [dict(e) for e in entries] + [signal_entry(key, origin, 6)]
    forged[2] = {**forged[2], "record": {**forged[2]["record"], "value": "y"}}
    write_export(tmp_path / "b", key, origin, forged)
    with pytest.raises(AuditFailed, match=r"^entry 2: signal record signature"):
        audit_export(tmp_path / "b", pinned, state_path=state)
    # Rewriting with valid signatures still breaks consistency with what was verified before.
    forged[2] = signal_entry(key, origin, 99)
    write_export(tmp_path / "c", key, origin, forged)
    with pytest.raises(AuditFailed, match=r"consistency: the first 6 entries no longer hash"):
        audit_export(tmp_path / "c", pinned, state_path=state)


def test_foreign_records_counted_or_verified(tmp_path: Path) -> None:
    key, origin = NodeKey.generate(), "log.example"
    peer = NodeKey.generate()
    entries = [
        signal_entry(key, origin, 0),
        {
            "kind": "received",
            "time": "t",
            "record": sign_record({"kind": "signal"}, peer, "p.example"),
        },
    ]
    write_export(tmp_path / "e", key, origin, entries)
    report = audit_export(tmp_path / "e", key.verifier(origin))
    assert report.unverified["p.example"] == 1 and not report.failures
    report = audit_export(
        tmp_path / "e", key.verifier(origin), peer_keys=[peer.verifier("p.example")]
    )
    assert report.verified["p.example"] == 1
    with pytest.raises(AuditFailed, match=r"^entry 1: "):
        audit_export(
            tmp_path / "e",
            key.verifier(origin),
            peer_keys=[NodeKey.generate().verifier("p.example")],
        )


def test_locate_divergence_by_consistency_proofs() -> None:
    real = merkle.MerkleTree(b"%d" % i for i in range(37))
    for bad in (0, 1, 16, 36):
        ours = LeafHashes()
        for i in range(37):
            ours.append(merkle.leaf_hash(b"x" if i == bad else b"%d" % i))
        found = locate_divergence(ours, 37, real.root(), real.consistency_proof)
        assert found == bad
    ours = LeafHashes()
    for i in range(37):
        ours.append(real.leaf_hash(i))
    assert ours.root() == real.root() and ours.root_at(20) == real.root(20)
    assert locate_divergence(ours, 37, real.root(), real.consistency_proof) is None


# --- key rotation and configuration entries ------------------------------------------------------


def test_key_rotation_is_verifiable_from_either_key(
    client: Any, token: str, node: Node, submit: Any, settings: Settings
) -> None:
    submit("clear")
    old_vkey = node.verifier_key
    rotation = keys.rotate(node)
    assert rotation.old_key == old_vkey and rotation.new_key == node.verifier_key != old_vkey
    assert (
        NodeKey.load(settings.data_dir / "node.key").verifier_key(node.origin) == rotation.new_key
    )
    assert [str(k) for k in keys.verifier_keys(node)] == [rotation.new_key, old_vkey]
    submit("green")
    exchange_log.publish_checkpoint(node)  # signed with the new key
    for pinned in (old_vkey, rotation.new_key):
        report = audit_node("", token, VerifierKey.parse(pinned), http=client)
        assert not report.failures
        assert sorted(report.keys) == sorted([old_vkey, rotation.new_key])
        assert report.verified[node.origin] == 3  # 2 signals + the rotation record
    # A key the log never handed over verifies nothing.
    stranger = NodeKey.generate().verifier(node.origin)
    with pytest.raises(AuditFailed, match="checkpoint"):
        audit_node("", token, stranger, http=client)


def test_config_entry_on_change(node: Node, make_settings: Any) -> None:
    first = exchange_log.log_config_if_changed(node)
    assert first is not None
    assert exchange_log.log_config_if_changed(node) is None
    node.settings = make_settings(max_batch=10)
    second = exchange_log.log_config_if_changed(node)
    assert second is not None and second > first
    data = json.loads(get_data(node, second))
    config = data["config"]
    assert config["max_batch"] == 10 and config["verifier_key"] == node.verifier_key
    assert "database_url" not in json.dumps(data) and "identifier" not in json.dumps(data)
