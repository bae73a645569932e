"""`signet import FILE`: a large hash list into the node, with progress and resume.

The work is in app/services/importer.py; this is the command line: options, the progress bar,
rejected lines on stderr, the summary and the exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.errors import InvalidInput

if TYPE_CHECKING:
    from app.services import importer
    from app.services.node import Node

EXIT_REJECTED = 1  # the import finished but refused some lines (unless --allow-errors)
EXIT_INTERRUPTED = 130  # Ctrl-C: re-run the same command to continue
PLAIN_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


def register(app: typer.Typer) -> None:
    app.command("import")(import_file)


def _guess_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".csv") or name.endswith(".tsv"):
        return "csv"
    return "jsonl"


def import_file(
    file: Annotated[Path, typer.Argument(help="The list: JSON lines, CSV, or StopNCII records.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="jsonl (POST /v1/signals items), csv (header: type,value[,quality,...]; "
            "threatexchange dataset CSV too) or stopncii (hashRecords items or FetchHashes "
            "pages, one JSON per line). Default: csv for *.csv, else jsonl.",
        ),
    ] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Type of rows that name none (pdq, md5, ...).")
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="Category of items that name none (repeatable)."),
    ] = None,
    quality: Annotated[
        int | None, typer.Option(help="PDQ quality for pdq items that carry none (0-100).")
    ] = None,
    key_id: Annotated[
        str | None,
        typer.Option(help="Identifier key to hash raw identifiers with (and their key_id)."),
    ] = None,
    opinion: Annotated[str | None, typer.Option(help="Opinion for items that state none.")] = None,
    tlp: Annotated[
        str | None, typer.Option(help="Audience for items that state none (default green).")
    ] = None,
    batch: Annotated[
        int, typer.Option(help="Items per transaction (and per resume step).", min=1, max=10_000)
    ] = 1000,
    allow_errors: Annotated[
        bool,
        typer.Option("--allow-errors", help="Exit 0 even if some lines were refused."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Import a hash list as this node's own signed signals; re-run to resume.

    Every line is checked as the API checks an item; refused lines are printed to stderr as
    `line N: field: reason` and skipped, the rest land. Exit 0 when every line landed (or was a
    duplicate), 1 if any line was refused (0 with --allow-errors), 2 for a usage error, 130 if
    interrupted: run the same command again and it continues where the last batch committed.
    """
    from app.cli import _fail, _node
    from app.services import importer

    if not file.is_file():
        _fail(f"{file}: no such file", code=2)
    fmt = fmt or _guess_format(file)
    if fmt not in importer.FORMATS:
        _fail(f"--format must be one of {', '.join(importer.FORMATS)}", code=2)
    # The header, read once, by the import's own CSV reader (quoted names included).
    columns = importer.csv_columns(file) if fmt == "csv" else []
    if fmt != "jsonl" and not category and "categories" not in columns:
        _fail(f"--category is required: {fmt} rows name no category", code=2)
    if fmt == "csv" and not type_ and not {"type", "signal_type"} & set(columns):
        # Checked up front: otherwise every row of the file is refused as `type: required`.
        _fail("--type is required: the CSV header names no type (or signal_type) column", code=2)
    defaults = importer.Defaults(
        type=type_,
        categories=list(category or []),
        quality=quality,
        key_id=key_id,
        opinion=opinion,
        tlp=tlp,
    )
    node = _node()
    try:
        _run(node, file, fmt, defaults, batch, allow_errors, quiet)
    finally:
        node.db.dispose()  # on every way out: pooled connections are not left to the GC


def _run(
    node: Node,
    file: Path,
    fmt: str,
    defaults: importer.Defaults,
    batch: int,
    allow_errors: bool,
    quiet: bool,
) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from app.cli import _fail, err, out
    from app.services import importer

    size = file.stat().st_size
    # Off a terminal (a pipe, a log file, a cron job) rich draws nothing until it stops, so a
    # long import would be silent for its whole run: there, a plain line every PLAIN_EVERY s.
    plain = not quiet and not err.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"),
        console=err,
        disable=quiet or plain,
        transient=False,
    )
    state: importer.Progress | None = None
    with progress:
        hashing = progress.add_task("digest", total=size, counts="")
        try:
            digest = importer.file_digest(file, lambda n: progress.advance(hashing, n))
        except KeyboardInterrupt:
            # Typer would exit 130 without a word; say that nothing was imported by this run.
            progress.stop()
            err.print("interrupted while reading the file: nothing imported", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        # The import gets its own task: on the digest's, rich kept the speed the task had when
        # it first completed (the digest's hundreds of MB/s) and showed it, with an ETA of 0,
        # for the whole import.
        progress.update(hashing, visible=False)
        row = importer.progress_of(node, digest)
        begun = row.byte_offset if row else 0
        task = progress.add_task("import", total=size, completed=begun, counts="")
        ticker = _PlainTicker(size, row.lines if row else 0, lambda n: importer.file_line(fmt, n))

        def on_batch(p: importer.Progress) -> None:
            nonlocal state
            state = p
            for rejection in p.rejected:
                progress.console.print(str(rejection), highlight=False, soft_wrap=True)
            t = p.totals
            counts = f"{t.created:,} new, {t.duplicate:,} dup, {t.rejected:,} refused"
            progress.update(task, completed=p.offset, counts=counts)
            if plain and not p.finished:
                line = ticker.line(p.offset, t.lines, counts)
                if line:
                    err.print(line, highlight=False, soft_wrap=True)

        if row is not None and row.finished_at is None:
            at = importer.line_ref(importer.file_line(fmt, row.lines) + 1)
            progress.console.print(
                f"resuming {file.name} at {at} (byte {row.byte_offset:,})",
                highlight=False,
            )
        try:
            result = importer.run_import(
                node, file, fmt, defaults, batch=batch, digest=digest, on_batch=on_batch
            )
        except KeyboardInterrupt:
            progress.stop()
            at = (
                f" after {importer.line_ref(importer.file_line(fmt, state.totals.lines))}"
                if state
                else ""
            )
            err.print(f"interrupted{at}: run the same command again to continue", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except InvalidInput as exc:
            _fail(f"{exc.field}: {exc.reason}", code=2)
    t = result.totals
    if result.already:
        out.print(
            f"{file.name} was imported already (sha256 {digest[:16]}…)",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        f"{t.lines:,} lines: {t.created:,} created, {t.duplicate:,} duplicate, "
        f"{t.rejected:,} refused, {t.skipped:,} skipped (withdrawn)",
        highlight=False,
        soft_wrap=True,  # one line for scripts: rich wraps at 80 columns off a terminal
    )
    if t.rejected and not allow_errors:
        raise typer.Exit(EXIT_REJECTED)


class _PlainTicker:
    """Progress as plain lines, for a stderr that is not a terminal: at most one every
    PLAIN_EVERY seconds, with the share of the file done, the line reached and the rate."""

    def __init__(self, size: int, lines_before: int, file_line: Callable[[int], int]) -> None:
        self.size = size
        self.lines_before = lines_before  # done by earlier runs: not this run's rate
        self.file_line = file_line
        self.started = time.monotonic()
        self.last = self.started

    def line(self, offset: int, lines: int, counts: str) -> str | None:
        from app.services.importer import line_ref

        now = time.monotonic()
        if now - self.last < PLAIN_EVERY:
            return None
        self.last = now
        share = offset / self.size if self.size else 1.0
        rate = (lines - self.lines_before) / max(now - self.started, 1e-9)
        return (
            f"import: {share:.0%} ({offset / 1e6:,.1f} of {self.size / 1e6:,.1f} MB), "
            f"{line_ref(self.file_line(lines))}, {counts}, {rate:,.0f} lines/s"
        )
