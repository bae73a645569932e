"""`signet import`: formats, bad lines reported by number, raw identifiers keyed before storage,
and resume after the process is killed mid-import (SIGKILL) with nothing lost or doubled and the
exchange log still verifying. Both engines (the `db_url` fixture)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from app.audit.verify import LogAuditor
from app.cli import app as cli
from app.crypto.keys import VerifierKey
from app.services import log as exchange_log
from app.services.node import Node
from app.settings import Settings
from app.storage.models import ImportProgressRow, SignalRow
from tests.cli.test_operator_cli import env_for

runner = CliRunner()
SIGNET = str(Path(sys.executable).with_name("signet"))
ID_KEY = base64.b64encode(b"k" * 32).decode()


def md5(i: int) -> str:
    return f"{i:032x}"


def pdq(i: int) -> str:
    return f"{i:016x}" * 4


def verify_log(node: Node) -> int:
    """Check every entry of the node's log against its own key and a fresh checkpoint; return
    the log size."""
    note = exchange_log.publish_checkpoint(node).note
    auditor = LogAuditor(VerifierKey.parse(node.verifier_key))
    size = exchange_log.latest_checkpoint(node).size
    start = 0
    while start < size:
        page = exchange_log.entries_page(node, start, min(size, start + 1000))
        for e in page:
            auditor.add(e.index, e.entry, e.leaf_hash)
        start += len(page)
    failure = auditor.finish(note).first_failure()
    assert failure is None, failure
    return size


def signal_log_entries(node: Node) -> int:
    with node.db.read() as s:
        return int(s.execute(text("SELECT count(*) FROM log_entry WHERE kind = 'signal'")).scalar())


def own_signals(node: Node) -> list[SignalRow]:
    with node.db.read() as s:
        return list(s.execute(select(SignalRow).order_by(SignalRow.change_seq)).scalars())


def test_jsonl_bad_lines_reported_by_number_good_lines_land(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    lines = [json.dumps({"type": "md5", "value": md5(i), "categories": ["csam"]}) for i in range(5)]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"type": "md5", "value": "xyz", "categories": ["csam"]}))
    lines.append(json.dumps({"type": "pdq", "value": pdq(1), "categories": ["csam"]}))  # no quality
    lines.append(json.dumps({"type": "md5", "value": md5(1), "categories": ["csam"]}))  # dup
    lines.append("")
    lines.append(json.dumps({"type": "md5", "value": md5(9), "categories": ["nope"]}))
    f = tmp_path / "list.jsonl"
    f.write_text("\n".join(lines) + "\n")

    r = runner.invoke(cli, ["import", str(f), "--quiet"], env=env_for(settings))
    assert r.exit_code == 1, r.output
    assert "line 3: not JSON" in r.output
    assert "line 5: value: an MD5 digest must be exactly 32 hex digits" in r.output
    assert "line 8: quality: required for pdq" in r.output
    assert "line 11: categories" in r.output
    assert "11 lines: 5 created, 1 duplicate, 4 refused" in r.output
    rows = own_signals(node)
    assert sorted(r.value for r in rows) == [md5(i) for i in range(5)]
    assert all(r.origin == node.origin and r.record["signature"] for r in rows)
    assert signal_log_entries(node) == 5
    verify_log(node)

    # The same file again: already imported, nothing added; --allow-errors exits 0.
    again = runner.invoke(cli, ["import", str(f), "--allow-errors"], env=env_for(settings))
    assert again.exit_code == 0, again.output
    assert "imported already" in again.output
    assert len(own_signals(node)) == 5


def test_csv_with_type_option_threatexchange_csv_and_stopncii(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    plain = tmp_path / "hashes.csv"
    plain.write_text("value\n" + "".join(f"{md5(i)}\n" for i in range(3)) + "zz\n")
    r = runner.invoke(
        cli,
        ["import", str(plain), "--type", "md5", "--category", "csam", "--quiet"],
        env=env_for(settings),
    )
    assert r.exit_code == 1, r.output
    assert "line 5: value" in r.output  # the header is line 1
    assert "4 lines: 3 created, 0 duplicate, 1 refused" in r.output

    te = tmp_path / "te.csv"  # `threatexchange dataset -P --csv`
    te.write_text(
        "collab,signal_type,signal_str,category,tags\n"  # its columns, in its order
        f"Sample Data,pdq,{pdq(7)},TRUE_POSITIVE,a b\n"
        f"Sample Data,video_md5,{md5(100)},TRUE_POSITIVE,\n"
        f"Sample Data,raw_text,hello there,TRUE_POSITIVE,\n"
    )
    r = runner.invoke(
        cli,
        ["import", str(te), "--category", "ncii", "--quality", "90", "--quiet"],
        env=env_for(settings),
    )
    assert r.exit_code == 1, r.output
    assert "line 4: type" in r.output  # raw_text is no Signet type
    assert "3 lines: 2 created" in r.output

    stop = tmp_path / "fetch.jsonl"  # a saved FetchHashes walk: one page per line
    page = {
        "count": 3,
        "hashRecords": [
            {"signalType": "ImagePDQ", "hashValue": pdq(8), "hashStatus": "Active"},
            {"signalType": "VideoMD5", "hashValue": md5(200), "hashStatus": "Withdrawn"},
            {"signalType": "Audio", "hashValue": "x", "hashStatus": "Active"},
        ],
    }
    stop.write_text(
        json.dumps(page)
        + "\n"
        + json.dumps({"signalType": "VideoMD5", "hashValue": md5(201), "hashStatus": "Active"})
        + "\n"
    )
    r = runner.invoke(
        cli,
        ["import", str(stop), "--format", "stopncii", "--category", "ncii", "--quality", "80"],
        env=env_for(settings),
    )
    assert r.exit_code == 1, r.output
    assert "line 1: hashRecords[2].signalType: unknown" in r.output
    assert "2 lines: 2 created, 0 duplicate, 1 refused, 1 skipped" in r.output
    values = {row.value: row for row in own_signals(node)}
    assert pdq(8) in values and md5(201) in values and md5(200) not in values
    assert values[pdq(8)].attrs == {"quality": 80} and values[pdq(8)].categories == ["ncii"]
    verify_log(node)


def test_csv_without_a_category_is_refused_before_reading(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    f = tmp_path / "h.csv"
    f.write_text("value\n" + md5(1) + "\n")
    r = runner.invoke(cli, ["import", str(f), "--type", "md5"], env=env_for(settings))
    assert r.exit_code == 2 and "--category" in r.output
    assert own_signals(node) == []


def test_csv_without_a_type_is_refused_before_reading(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    """A header of values only and no --type: every row was refused as `type: required`."""
    f = tmp_path / "h.csv"
    f.write_text("value\n" + md5(1) + "\n")
    r = runner.invoke(cli, ["import", str(f), "--category", "csam"], env=env_for(settings))
    assert r.exit_code == 2, r.output
    assert "--type is required: the CSV header names no type" in r.output
    assert own_signals(node) == []


def test_csv_header_is_read_once_as_the_import_reads_it(
    node: Node, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command read the header for its checks apart from the import, twice (once for
    `categories`, once for `type`), by splitting on commas: a header with quoted names (as a
    spreadsheet may write it) was refused as naming no category, though the import reads it."""
    from app.services import importer

    reads: list[Path] = []
    real = getattr(importer, "csv_columns", None)  # (None before it was the one reader)

    def counted(path: Path) -> list[str]:
        reads.append(path)
        assert real is not None
        return real(path)

    monkeypatch.setattr(importer, "csv_columns", counted, raising=False)
    f = tmp_path / "quoted.csv"
    f.write_text('"type","value","categories"\n' + f"md5,{md5(1)},csam\n")
    r = runner.invoke(cli, ["import", str(f), "--quiet"], env=env_for(settings))
    assert r.exit_code == 0, r.output
    assert "1 lines: 1 created" in r.output
    assert reads == [f]


RAW = ["Alice.Example@Mail.Example.com", "bob.builder@mail.example.com"]


@pytest.fixture
def id_settings(make_settings: Any) -> Settings:
    s: Settings = make_settings(identifier_keys=f"fed={ID_KEY}")
    return s


def test_raw_identifiers_are_keyed_and_never_stored(id_settings: Settings, tmp_path: Path) -> None:
    from app.services.node import open_node
    from app.signals.identifiers import hash_identifier

    node = open_node(id_settings)
    try:
        f = tmp_path / "ids.csv"
        rows_in = "".join(f"email,{v}\n" for v in RAW) + "phone,call zebra-quokka\n"
        f.write_text("type,value\n" + rows_in)
        r = runner.invoke(
            cli,
            ["import", str(f), "--category", "sextortion", "--quiet"],
            env=env_for(id_settings, SIGNET_IDENTIFIER_KEYS=f"fed={ID_KEY}"),
        )
        assert r.exit_code == 1, r.output
        assert "line 4: value" in r.output and "zebra" not in r.output
        rows = own_signals(node)
        want = {hash_identifier("email", v, b"k" * 32, "fed") for v in RAW}
        assert {row.value for row in rows} == want
        assert all(row.attrs == {"key_id": "fed"} for row in rows)
        # Nowhere in the database: signals, records, log entries, import progress.
        dump = _database_text(node)
        for raw in RAW:
            assert raw.lower() not in dump.lower() and raw.split("@")[0] not in dump
        verify_log(node)
    finally:
        node.db.dispose()


def _database_text(node: Node) -> str:
    from sqlalchemy import MetaData

    meta = MetaData()
    meta.reflect(node.db.engine)
    chunks = []
    with node.db.engine.connect() as conn:
        for table in meta.sorted_tables:
            chunks += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(chunks)


# --------------------------------------------------------------------------- kill and resume


def _progress(node: Node) -> ImportProgressRow | None:
    with node.db.read() as s:
        return s.execute(select(ImportProgressRow)).scalars().first()


def test_sigkill_mid_import_then_rerun_loses_nothing_and_doubles_nothing(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    n = 12_000
    f = tmp_path / "big.jsonl"
    with f.open("w") as out:
        for i in range(n):
            if i % 1000 == 999:
                out.write("garbage\n")  # bad lines on both sides of the kill
            else:
                out.write(json.dumps({"type": "md5", "value": md5(i), "categories": ["csam"]}))
                out.write("\n")
    exchange_log.log_config_if_changed(node)  # as a start would; the CLI checks it
    env = {**os.environ, **env_for(settings)}
    args = [SIGNET, "import", str(f), "--batch", "200", "--quiet", "--allow-errors"]
    first_err = tmp_path / "first.err"
    with first_err.open("wb") as errf:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        deadline = time.monotonic() + 120
        while True:
            row = _progress(node)
            if row is not None and row.lines >= 2000:
                break
            assert proc.poll() is None, first_err.read_text()
            assert time.monotonic() < deadline, "import made no progress"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = _progress(node)
    assert killed_at is not None and killed_at.finished_at is None
    assert killed_at.lines < n, "killed too late to test a resume"
    # What committed is exactly what the progress row says committed.
    assert len(own_signals(node)) == killed_at.created
    verify_log(node)

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming {f.name} at line {killed_at.lines + 1} " in done.stderr
    # Bad lines after the kill are reported by the second run, with their numbers.
    later_bad = [i + 1 for i in range(n) if i % 1000 == 999 and i + 1 > killed_at.lines]
    for line in later_bad:
        assert f"line {line}: not JSON" in done.stderr, done.stderr
    final = _progress(node)
    assert final is not None and final.finished_at is not None
    assert final.lines == n and final.rejected == n // 1000 and final.duplicate == 0
    rows = own_signals(node)
    want = {md5(i) for i in range(n) if i % 1000 != 999}
    assert len(rows) == len(want) == final.created  # none lost, none twice
    assert {r.value for r in rows} == want
    with node.db.read() as s:
        distinct = s.execute(select(func.count(func.distinct(SignalRow.match_key)))).scalar()
    assert distinct == len(rows)
    # Every signal has exactly one log entry, and change_seq is gap-free over them.
    assert signal_log_entries(node) == len(rows)
    seqs = [r.change_seq for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    verify_log(node)


def test_duplicate_check_stays_on_its_index_as_an_import_grows(node: Node, tmp_path: Path) -> None:
    """A large import must not slow as the table grows: its duplicate check has to probe
    ix_signal_match_key_status. On PostgreSQL the planner takes that index only if it has
    statistics; autovacuum does not analyse a table filling within minutes (and is off on some
    servers), and without them it scanned every active signal per check (~400 rows/s at 200k
    rows). The import analyses the tables itself as they grow."""
    from app.services import importer, signals

    f = tmp_path / "list.jsonl"
    f.write_text(
        "".join(
            json.dumps({"type": "md5", "value": md5(i * 7919), "categories": ["csam"]}) + "\n"
            for i in range(3000)
        )
    )
    done = importer.run_import(node, f, "jsonl", importer.Defaults(), batch=500)
    assert done.totals.created == 3000

    probe = signals.active_uids_query([f"md5:{md5(i * 7919)}" for i in range(0, 3000, 150)])
    with node.db.engine.connect() as conn:
        sql = str(probe.compile(conn, compile_kwargs={"literal_binds": True}))
        explain = "EXPLAIN QUERY PLAN " if node.db.is_sqlite else "EXPLAIN "
        plan = " ".join(str(r) for r in conn.execute(text(explain + sql)))
    assert "ix_signal_match_key_status" in plan, plan
    with node.db.read() as s:  # and the probe finds what it should (match_key is type:value)
        assert len(s.execute(probe).all()) == 20


def test_csv_resume_numbers_lines_as_the_file_does(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    """A CSV's header is line 1 on a resumed run too: the resume message and the refused lines
    after it name the file's own line numbers (they were one short after a resume)."""
    from app.services import importer

    f = tmp_path / "hashes.csv"
    rows = [md5(i) for i in range(6)]
    rows[4] = "zz"  # the 5th data row: line 6 of the file
    f.write_text("value\n" + "".join(f"{v}\n" for v in rows))
    defaults = importer.Defaults(type="md5", categories=["csam"])

    def stop(_: importer.Progress) -> None:
        raise KeyboardInterrupt  # as Ctrl-C right after the first batch committed

    with pytest.raises(KeyboardInterrupt):
        importer.run_import(node, f, "csv", defaults, batch=2, on_batch=stop)
    row = _progress(node)
    assert row is not None and row.lines == 2 and row.finished_at is None

    args = ["import", str(f), "--type", "md5", "--category", "csam", "--quiet"]
    r = runner.invoke(cli, args, env=env_for(settings))
    assert r.exit_code == 1, r.output
    assert "resuming hashes.csv at line 4 " in r.output  # data rows 1-2 were lines 2-3
    assert "line 6: value" in r.output, r.output
    assert "6 lines: 5 created, 0 duplicate, 1 refused" in r.output


def test_every_message_writes_a_line_number_one_way(
    node: Node, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused lines said `line 1151`, the progress and resume lines `line 1,101`: one number,
    two spellings, so a grep or a script for one missed the other. Now none has a separator."""
    import re

    import app.cli_import
    from app.services import importer

    monkeypatch.setattr(app.cli_import, "PLAIN_EVERY", 0.0, raising=False)  # a line per batch
    f = tmp_path / "hashes.csv"
    rows = [md5(i) for i in range(1200)]
    rows[1149] = "zz"  # the 1,150th data row: line 1151 of the file
    f.write_text("value\n" + "".join(f"{v}\n" for v in rows))

    def stop(_: importer.Progress) -> None:
        raise KeyboardInterrupt  # as Ctrl-C right after the first batch committed

    with pytest.raises(KeyboardInterrupt):
        importer.run_import(
            node, f, "csv", importer.Defaults(type="md5", categories=["csam"]), on_batch=stop
        )
    args = ["import", str(f), "--type", "md5", "--category", "csam", "--batch", "100"]
    r = runner.invoke(cli, args, env=env_for(settings))
    assert r.exit_code == 1, r.output
    assert "resuming hashes.csv at line 1002 " in r.output, r.output
    assert "line 1151: value" in r.output, r.output
    assert "MB), line 1101, 1,100 new, 0 dup, 0 refused" in r.output, r.output
    numbers = re.findall(r"line (\d+(?:,\d{3})*)", r.output)
    assert len(numbers) >= 3 and not [n for n in numbers if "," in n], numbers


def test_progress_off_a_terminal_is_plain_lines_and_the_summary_one_line(
    node: Node, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped (a log file, cron), rich's bar drew nothing until the end, so a long import said
    nothing for its whole run; and the summary was wrapped at 80 columns, which breaks a script
    reading it. Off a terminal the import now prints plain progress lines."""
    import app.cli_import

    monkeypatch.setattr(app.cli_import, "PLAIN_EVERY", 0.0, raising=False)  # a line per batch
    f = tmp_path / "list.jsonl"
    f.write_text(
        "".join(
            json.dumps({"type": "md5", "value": md5(i), "categories": ["csam"]}) + "\n"
            for i in range(6)
        )
    )
    env = {**env_for(settings), "COLUMNS": "40"}
    r = runner.invoke(cli, ["import", str(f), "--batch", "2"], env=env)
    assert r.exit_code == 0, r.output
    progress = [line for line in r.output.splitlines() if line.startswith("import: ")]
    assert len(progress) == 3, r.output  # one per batch (the end prints the summary instead)
    assert progress[0].startswith("import: 33% (")
    assert "line 2, 2 new, 0 dup, 0 refused" in progress[0]
    assert "line 6, 6 new" in progress[-1]
    summary = "6 lines: 6 created, 0 duplicate, 0 refused, 0 skipped (withdrawn)"
    assert summary in r.output.splitlines(), r.output


def test_csv_unclosed_quote_is_named_as_such(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    """A quote left open was read as one long field and refused as `value: empty`, which sent
    the reader looking for a missing hash."""
    f = tmp_path / "q.csv"
    f.write_text(f'type,value\nmd5,{md5(1)}\n"md5,{md5(2)}\nmd5,{md5(3)}\n')
    r = runner.invoke(cli, ["import", str(f), "--category", "csam"], env=env_for(settings))
    assert r.exit_code == 1, r.output
    assert "line 3: not CSV: a quote is not closed" in r.output, r.output
    assert "3 lines: 2 created, 0 duplicate, 1 refused" in r.output


def test_ctrl_c_while_reading_the_file_says_so(
    node: Node, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the digest (seconds on a large file) exited 130 with no message at all."""
    from app.services import importer

    def interrupted(*_: Any, **__: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(importer, "file_digest", interrupted)
    f = tmp_path / "list.jsonl"
    f.write_text(json.dumps({"type": "md5", "value": md5(1), "categories": ["csam"]}) + "\n")
    r = runner.invoke(cli, ["import", str(f)], env=env_for(settings))
    assert r.exit_code == 130
    assert "interrupted while reading the file: nothing imported" in r.output
    assert own_signals(node) == []


def test_stopncii_records_without_the_format_option_say_which_format(
    node: Node, settings: Settings, tmp_path: Path
) -> None:
    """A StopNCII export saved as *.jsonl is read as signals by default; every line was refused
    as `type: required`, which did not point at --format stopncii."""
    f = tmp_path / "export.jsonl"
    rec = {"signalType": "VideoMD5", "hashValue": md5(1), "hashStatus": "Active"}
    f.write_text(json.dumps(rec) + "\n" + json.dumps({"hashRecords": [rec]}) + "\n")
    r = runner.invoke(cli, ["import", str(f), "--category", "ncii"], env=env_for(settings))
    assert r.exit_code == 1, r.output
    assert "line 1: a StopNCII record: use --format stopncii" in r.output
    assert "line 2: a StopNCII record: use --format stopncii" in r.output
