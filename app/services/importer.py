"""`signet import`: load a large hash list into the node as its own signed signals.

Formats (docs/operating.md, "Importing a hash list"):

- `jsonl`: one JSON object per line, the fields of a `POST /v1/signals` item.
- `csv`: a header line, then one row per line. Columns `type` (or `signal_type`), `value`
  (or `hash`, `signal_str`), and optionally `quality`, `key_id`, `categories` (separated by
  `;` or spaces), `opinion`, `confidence`. python-threatexchange's
  `threatexchange dataset -P --csv` output (`collab,signal_type,signal_str,category,tags`)
  is this shape; its type names (`pdq`, `video_md5`, ...) are mapped to Signet's.
- `stopncii`: one JSON object per line, each either a StopNCII `hashRecords` item
  (`signalType`, `hashValue`, `hashStatus`) or a whole FetchHashes page (`{"hashRecords":
  [...]}`), as Signet's own `/stopncii/v1/FetchHashes` serves them. `Withdrawn` records are
  skipped (counted, not imported).

Every line is validated on its own, exactly as the API validates an item; a bad line is reported
with its number and reason and the good ones land. Raw identifiers (an e-mail address in an
`email` row) are normalised and keyed with the node's identifier key before anything else sees
them, as `signet identifier hash` does; the raw value never reaches the database or a message.

Resuming: the file is named by the SHA-256 of its bytes. Each batch of lines is published in one
write transaction (holding the sequencer lock, so the exchange log stays linear with the running
node's own writes) together with an `import_progress` row saying the byte offset and line number
the batch ended at. A crash or Ctrl-C loses at most the batch in flight, which rolled back with
its progress; a re-run of the same file seeks to the committed offset. Nothing is imported twice:
a value already active from this node is a duplicate, never a second signal.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select

from app.errors import InvalidInput
from app.services import signals
from app.services.node import Node
from app.services.tx import transaction
from app.signals.vocab import IDENTIFIER_TYPES
from app.storage.models import ImportProgressRow
from app.storage.types import utcnow

FORMATS = ("jsonl", "csv", "stopncii")
DEFAULT_BATCH = 1000
# A line longer than this is refused unread: the API's own item limit is 1 MB of value.
MAX_LINE_BYTES = 2_000_000

# StopNCII signalType -> Signet type (the reverse of app/services/feeds.py STOPNCII_TYPES).
STOPNCII_TYPES = {"ImagePDQ": "pdq", "VideoMD5": "md5", "URL": "domain", "Text": "keyword"}
# python-threatexchange signal type names -> Signet type, for its dataset CSV.
TE_TYPES = {"pdq": "pdq", "video_md5": "md5", "md5": "md5", "url": "url", "sha256": "sha256"}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_TABLE = ImportProgressRow.__table__  # type: ignore[attr-defined]


class LineError(Exception):
    """A line (or one record of it) that cannot be imported: field and reason, never the value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason = field, reason


@dataclass
class Defaults:
    """Fields applied to every item that does not carry its own (command-line options)."""

    type: str | None = None
    categories: list[str] = field(default_factory=list)
    quality: int | None = None
    key_id: str | None = None
    opinion: str | None = None
    tlp: str | None = None

    def apply(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.type and "type" not in item:
            item["type"] = self.type
        if self.categories and not item.get("categories"):
            item["categories"] = list(self.categories)
        if self.quality is not None and item.get("type") == "pdq" and "quality" not in item:
            item["quality"] = self.quality
        if self.key_id and item.get("type") in IDENTIFIER_TYPES and "key_id" not in item:
            item["key_id"] = self.key_id
        if self.opinion and "opinion" not in item:
            item["opinion"] = self.opinion
        if self.tlp and "audience" not in item:
            item["audience"] = {"tlp": self.tlp}
        return item


@dataclass
class Counts:
    lines: int = 0
    created: int = 0
    duplicate: int = 0
    rejected: int = 0
    skipped: int = 0


def line_ref(n: int) -> str:
    """A line of the file as every import message names it: `line 80002`, no thousands
    separator (counts have one; a line number is what `sed -n 80002p` or an editor takes)."""
    return f"line {n}"


@dataclass
class Rejection:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{line_ref(self.line)}: {where}{self.reason}"


@dataclass
class Progress:
    """What a run reports after each committed batch (and at its end)."""

    digest: str
    size: int
    offset: int
    totals: Counts
    rejected: list[Rejection]
    resumed_from: int = 0
    finished: bool = False
    already: bool = False  # the file had been imported to its end by an earlier run


def file_digest(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return h.hexdigest()


# --------------------------------------------------------------------------- parsing


def _csv_header(line: str) -> list[str]:
    return [h.strip().lower() for h in next(csv.reader([line]))]


def csv_columns(path: Path) -> list[str]:
    """The column names line 1 of a CSV file gives, as the import reads them."""
    with path.open("rb") as f:
        return _csv_header(f.readline().decode("utf-8-sig", errors="replace"))


def _csv_item(header: list[str], line: str) -> dict[str, Any]:
    # strict: an unclosed quote is an error here, where the lenient reader took the rest of
    # the line as one field and the row was refused for an empty value, which misled.
    try:
        row = next(csv.reader([line], strict=True), [])
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            reason = "not CSV: a quote is not closed (fields must not span lines)"
            raise LineError("", reason) from None
        raise LineError("", f"not CSV ({exc})") from None
    if len(row) > len(header):
        raise LineError("", f"{len(row)} columns, the header names {len(header)}")
    cells = {h: v.strip() for h, v in zip(header, row, strict=False) if v.strip()}
    item: dict[str, Any] = {}
    type_ = cells.get("type") or cells.get("signal_type")
    if type_:
        item["type"] = TE_TYPES.get(type_, type_) if "signal_type" in cells else type_
    value = cells.get("value") or cells.get("hash") or cells.get("signal_str")
    if value is None:
        raise LineError("value", "empty")
    item["value"] = value
    if "quality" in cells:
        try:
            item["quality"] = int(cells["quality"])
        except ValueError:
            raise LineError("quality", "must be an integer from 0 to 100") from None
    if "confidence" in cells:
        try:
            item["confidence"] = int(cells["confidence"])
        except ValueError:
            raise LineError("confidence", "must be an integer from 0 to 100") from None
    for name in ("key_id", "opinion"):
        if name in cells:
            item[name] = cells[name]
    if "categories" in cells:
        item["categories"] = [c for c in re.split(r"[;\s]+", cells["categories"]) if c]
    return item


def _stopncii_items(obj: Any) -> list[dict[str, Any] | LineError | None]:
    """The items of one StopNCII line: a dict to import, None for a Withdrawn record (skipped),
    or the LineError of one bad record of a page (the page's other records still land)."""
    if not isinstance(obj, dict):
        raise LineError("", "must be a JSON object (a hashRecords item or a FetchHashes page)")
    records = obj.get("hashRecords", [obj])
    if not isinstance(records, list):
        raise LineError("hashRecords", "must be a list")
    out: list[dict[str, Any] | LineError | None] = []
    for i, rec in enumerate(records):
        where = f"hashRecords[{i}]." if "hashRecords" in obj else ""
        try:
            out.append(_stopncii_item(rec, where))
        except LineError as exc:
            out.append(exc)
    return out


def _stopncii_item(rec: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(rec, dict):
        raise LineError(where.rstrip("."), "must be an object")
    status = rec.get("hashStatus", "Active")
    if status == "Withdrawn":
        return None
    if status != "Active":
        raise LineError(f"{where}hashStatus", "must be Active or Withdrawn")
    type_ = STOPNCII_TYPES.get(rec.get("signalType"))  # type: ignore[arg-type]
    if type_ is None:
        known = ", ".join(STOPNCII_TYPES)
        raise LineError(f"{where}signalType", f"unknown; known: {known}")
    value = rec.get("hashValue")
    if not isinstance(value, str):
        raise LineError(f"{where}hashValue", "must be a string")
    return {"type": type_, "value": value}


@dataclass
class _Line:
    number: int
    end: int  # byte offset just past this line
    # None: skipped on purpose (a Withdrawn record); a LineError: one bad record of a page.
    items: list[dict[str, Any] | LineError | None]
    error: LineError | None = None


def file_line(fmt: str, lines: int) -> int:
    """The file's line number of the last of `lines` data lines (a CSV's header is line 1)."""
    return lines + 1 if fmt == "csv" else lines


def read_lines(path: Path, fmt: str, start: int, first_line: int) -> Iterator[_Line]:
    """The file's lines from byte `start`, after `first_line` data lines, parsed."""
    with path.open("rb") as f:
        header: list[str] | None = None
        if fmt == "csv":
            head = f.readline()
            header = _csv_header(head.decode("utf-8-sig", errors="replace"))
            if "value" not in header and "hash" not in header and "signal_str" not in header:
                raise InvalidInput(
                    "FILE", "line 1 (the CSV header) names no value, hash or signal_str column"
                )
            if start == 0:
                start = len(head)
            # Lines are numbered as in the file, header included, on a first run and on a
            # resumed one alike (the progress row counts data lines only).
            first_line = file_line(fmt, first_line)
        f.seek(start)
        offset, number = start, first_line
        for raw in f:
            offset += len(raw)
            number += 1
            text = raw.strip()
            if not text:
                yield _Line(number, offset, [])
                continue
            try:
                if len(raw) > MAX_LINE_BYTES:
                    raise LineError("", f"longer than {MAX_LINE_BYTES} bytes")
                try:
                    decoded = text.decode()
                except UnicodeDecodeError:
                    raise LineError("", "not UTF-8") from None
                if fmt == "csv":
                    assert header is not None
                    items: list[dict[str, Any] | LineError | None] = [_csv_item(header, decoded)]
                else:
                    try:
                        obj = orjson.loads(decoded)
                    except orjson.JSONDecodeError as exc:
                        raise LineError("", f"not JSON ({exc.msg})") from None
                    if fmt == "stopncii":
                        items = _stopncii_items(obj)
                    else:
                        if not isinstance(obj, dict):
                            raise LineError("", "must be a JSON object (a signal)")
                        if "type" not in obj and ("signalType" in obj or "hashRecords" in obj):
                            # Else every line of the file is refused as `type: required`,
                            # which does not say what is wrong with the command.
                            raise LineError("", "a StopNCII record: use --format stopncii")
                        items = [obj]
                yield _Line(number, offset, items)
            except LineError as exc:
                yield _Line(number, offset, [], exc)


# --------------------------------------------------------------------------- identifiers


class IdentifierHasher:
    """Keys raw identifiers the way `signet identifier hash` does, before validation."""

    def __init__(self, node: Node, key_id: str | None) -> None:
        keys = node.settings.identifier_keys
        chosen = key_id or node.settings.default_identifier_key or None
        if chosen is None and len(keys) == 1:
            chosen = next(iter(keys))
        self.key_id = chosen if chosen in keys else None
        self._key = keys[self.key_id].get_secret_value() if self.key_id else None

    def __call__(self, item: dict[str, Any]) -> None:
        value = item.get("value")
        if item.get("type") not in IDENTIFIER_TYPES or not isinstance(value, str):
            return
        if _HEX64.fullmatch(value.strip()):
            return  # already keyed; the API checks its key_id
        if self._key is None or self.key_id is None:
            raise LineError(
                "value",
                "a raw identifier, and no identifier key to hash it with: set "
                "SIGNET_IDENTIFIER_KEYS (and --key-id); raw identifiers are never stored",
            )
        from app.signals.identifiers import hash_identifier

        try:
            item["value"] = hash_identifier(item["type"], value, self._key, self.key_id)
        except InvalidInput as exc:  # its reasons never repeat the value
            raise LineError("value", exc.reason) from None
        item["key_id"] = self.key_id


# --------------------------------------------------------------------------- the run


def progress_of(node: Node, digest: str) -> ImportProgressRow | None:
    with node.db.read() as session:
        return session.get(ImportProgressRow, digest)


def run_import(
    node: Node,
    path: Path,
    fmt: str,
    defaults: Defaults,
    *,
    batch: int = DEFAULT_BATCH,
    digest: str | None = None,
    on_batch: Callable[[Progress], None] | None = None,
) -> Progress:
    """Import `path`, resuming where an earlier run of the same bytes stopped."""
    if fmt not in FORMATS:
        raise InvalidInput("--format", f"one of {', '.join(FORMATS)}")
    size = path.stat().st_size
    digest = digest or file_digest(path)
    hasher = IdentifierHasher(node, defaults.key_id)
    row = progress_of(node, digest)
    totals = Counts()
    start = 0
    if row is not None:
        totals = Counts(row.lines, row.created, row.duplicate, row.rejected, row.skipped)
        start = row.byte_offset
        if row.finished_at is not None:
            return Progress(digest, size, size, totals, [], start, finished=True, already=True)
    state = Progress(digest, size, start, totals, [], resumed_from=start)
    stats = _Statistics(node, state.totals.created)
    pending: list[_Line] = []
    items = 0
    for line in read_lines(path, fmt, start, totals.lines):
        pending.append(line)
        items += len(line.items)
        if items >= batch or len(pending) >= batch:
            _commit(node, path, state, pending, defaults, hasher)
            stats.after_batch(state.totals.created)
            pending, items = [], 0
            if on_batch:
                on_batch(state)
    _commit(node, path, state, pending, defaults, hasher, finished=True)
    state.finished = True
    if on_batch:
        on_batch(state)
    return state


class _Statistics:
    """Keeps the planner's statistics current while an import grows the tables (PostgreSQL).

    The tables an import writes grow far faster than autovacuum re-analyses them, and a
    planner that still believes `signal` is empty answers each duplicate check with a scan of
    every active signal: an import of 200k rows slowed to ~400 rows/s (docs/scaling.md).
    So the import analyses them itself, each time the rows it created have doubled since the
    last time (from `FIRST` on): about a dozen ANALYZEs for 10M rows, each a sample of at
    most 30k rows per table."""

    FIRST = 2000
    TABLES = ("signal", "log_entry", "log_node")

    def __init__(self, node: Node, created: int) -> None:
        self.node = node
        self.next_at = max(self.FIRST, created * 2)

    def after_batch(self, created: int) -> None:
        if created >= self.next_at:
            self.node.db.analyze(*self.TABLES)
            self.next_at = created * 2


def _commit(
    node: Node,
    path: Path,
    state: Progress,
    lines: list[_Line],
    defaults: Defaults,
    hasher: IdentifierHasher,
    *,
    finished: bool = False,
) -> None:
    """Validate `lines`, then publish them and record the progress in one transaction."""
    prepared: list[signals.PreparedSignal] = []
    where: list[int] = []  # prepared index -> line number
    rejected: list[Rejection] = []
    skipped = 0
    checked_at = utcnow()  # one time per chunk, as a batch submitted through the API
    for line in lines:
        if line.error is not None:
            rejected.append(Rejection(line.number, line.error.field, line.error.reason))
            continue
        for sub, raw in enumerate(line.items):
            if raw is None:
                skipped += 1
                continue
            if isinstance(raw, LineError):  # its field already names the record
                rejected.append(Rejection(line.number, raw.field, raw.reason))
                continue
            prefix = f"hashRecords[{sub}]" if len(line.items) > 1 else ""
            try:
                item = defaults.apply(dict(raw))
                hasher(item)
                prepared.append(signals.prepare(node, len(prepared), item, checked_at))
                where.append(line.number)
            except LineError as exc:
                rejected.append(Rejection(line.number, _join(prefix, exc.field), exc.reason))
            except ValidationError as exc:
                err = signals.pydantic_item_error(exc, prefix)
                rejected.append(Rejection(line.number, err.field.lstrip("."), err.reason))
            except InvalidInput as exc:
                rejected.append(Rejection(line.number, _join(prefix, exc.field), exc.reason))
    totals = state.totals
    end = lines[-1].end if lines else state.offset
    now = utcnow()
    with transaction(node) as tx:
        created = duplicate = 0
        if prepared:
            for done in signals.publish_many(tx, prepared, None):
                if done.status == "created":
                    created += 1
                elif done.status == "duplicate":
                    duplicate += 1
                elif done.error is not None:  # too large once signed
                    number = where[done.index]
                    rejected.append(Rejection(number, done.error.field, done.error.reason))
        values: dict[str, Any] = {
            "name": str(path)[-1024:],
            "size": state.size,
            "byte_offset": end,
            "lines": totals.lines + len(lines),
            "created": totals.created + created,
            "duplicate": totals.duplicate + duplicate,
            "rejected": totals.rejected + len(rejected),
            "skipped": totals.skipped + skipped,
            "updated_at": now,
            "finished_at": now if finished else None,
        }
        conn = tx.session.connection()
        updated = conn.execute(
            _TABLE.update().where(_TABLE.c.digest == state.digest).values(**values)
        ).rowcount
        if not updated:
            conn.execute(_TABLE.insert().values(digest=state.digest, started_at=now, **values))
    state.offset = end
    state.totals = Counts(
        lines=values["lines"],
        created=values["created"],
        duplicate=values["duplicate"],
        rejected=values["rejected"],
        skipped=values["skipped"],
    )
    state.rejected = rejected


def _join(prefix: str, field_: str) -> str:
    return f"{prefix}.{field_}" if prefix and field_ else prefix or field_


def imports(node: Node) -> list[ImportProgressRow]:
    with node.db.read() as session:
        stmt = select(ImportProgressRow).order_by(ImportProgressRow.started_at)  # type: ignore[arg-type]
        return list(session.execute(stmt).scalars())


__all__ = [
    "DEFAULT_BATCH",
    "FORMATS",
    "Counts",
    "Defaults",
    "Progress",
    "Rejection",
    "file_digest",
    "imports",
    "run_import",
]
