"""Statements run on the raw driver, for the write paths whose rows SQLAlchemy would otherwise
process one by one in Python: the exchange log's appends (every write transaction), records
pulled from peers, bulk submit and `signet import`.

`connection.execute(table.insert(), rows)` is already one `executemany`, but SQLAlchemy still
works per row and per column in Python before the driver sees anything: it builds each row's
parameters from the compiled statement (`construct_params`) and calls every column's bind
processor through generic wrappers. At 1,000 rows a page that was as much CPU as verifying the
rows' signatures; for the log's one-row statements, the per-statement work cost more than the
database's.

`Prepared` does the same statement with the same conversions, prepared once per dialect and
column set: the statement compiled by SQLAlchemy for that dialect (so placeholders, casts and
quoting are SQLAlchemy's), each column's own bind processor (the exact function SQLAlchemy would
call: UTC datetimes, JSON through the engine's serializer, booleans, binary), and the rows
handed to the driver as plain tuples or dicts. Datetime values repeat a lot in a page (every
row's `created_at` is the same `now`), so their converted form is computed once per distinct
value in a call. The rows' values are taken out by `operator.itemgetter` and columns are
transposed with `zip`, so a column without a conversion costs no Python work per row; a JSON
column's dicts and lists go straight to the serializer SQLAlchemy's processor would call
(`_json_serializer`: only where that processor does nothing else with them). `run_values`
takes rows as tuples (the log's Merkle nodes and entries) instead of dicts.

`insert_many` is for rows that name every column the insert needs: a column with a Python-side
default that the rows leave out takes the ordinary Core path (which fills defaults), so the
result is always what `connection.execute(table.insert(), rows)` would store.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Dialect, Insert, LargeBinary, Table, Update

from app.storage.types import UTCDateTime

__all__ = ["Prepared", "insert_many"]


@dataclass(frozen=True)
class Prepared:
    """A statement compiled for one dialect, with its parameters' conversions."""

    sql: str
    names: tuple[str, ...]  # the rows' keys, in the statement's parameter order
    positional: bool  # qmark-style drivers (sqlite3) take tuples, pyformat ones dicts
    processors: tuple[Callable[[Any], Any] | None, ...]  # per name
    memo: tuple[bool, ...]  # per name: cache the converted value per distinct input (datetimes)
    # Per name: the JSON serializer that `processors[i]` calls for a dict or a list (and does
    # nothing else with one), or None. Such values are handed to it directly (below).
    json_direct: tuple[Callable[[Any], Any] | None, ...] = ()
    # The row's values in `names` order, as one C call per row.
    _getter: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.json_direct:
            object.__setattr__(self, "json_direct", (None,) * len(self.names))
        getter: Callable[[Any], Any] = itemgetter(*self.names) if self.names else (lambda _r: ())
        if len(self.names) == 1:  # itemgetter of one name gives the value, not a tuple
            one = itemgetter(self.names[0])
            getter = lambda row: (one(row),)  # noqa: E731
        object.__setattr__(self, "_getter", getter)

    @classmethod
    def of(
        cls, stmt: Insert | Update, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> Prepared:
        """Compile `stmt` for `dialect`. A parameter named after a column of the statement's
        table converts through that column's type; any other (a `bindparam` such as an
        UPDATE's new value) is passed as given."""
        if column_keys is None:
            compiled = stmt.compile(dialect=dialect)
        else:
            compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys))
        names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
        columns = stmt.table.c
        processors: list[Callable[[Any], Any] | None] = []
        memo: list[bool] = []
        json_direct: list[Callable[[Any], Any] | None] = []
        for name in names:
            direct = None
            if name in columns:
                column_type = columns[name].type
                if dialect.name == "sqlite" and isinstance(column_type, LargeBinary):
                    # SQLAlchemy wraps each value in sqlite3.Binary (a memoryview); sqlite3
                    # stores bytes as the same BLOB. Skipping it was ~3 % of a page from a
                    # peer (every Merkle node's hash).
                    processors.append(None)
                else:
                    impl = column_type.dialect_impl(dialect)
                    process: Callable[[Any], Any] | None = impl.bind_processor(dialect)
                    if process is not None:
                        process = _utc_text(column_type, dialect, process)
                    processors.append(process)
                    direct = _json_serializer(impl, dialect)
                memo.append(_is_datetime(column_type))
            else:
                processors.append(None)
                memo.append(False)
            json_direct.append(direct)
        return cls(
            compiled.string,
            names,
            compiled.positional,
            tuple(processors),
            tuple(memo),
            tuple(json_direct),
        )

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """The driver's parameters for `rows` (dicts keyed by `names`), converted per column."""
        # KeyError: a row lacks a column the first has.
        return self.converted(list(map(self._getter, rows)))

    def converted(self, values: list[Sequence[Any]]) -> list[Any]:
        """The driver's parameters for rows given as tuples in `names` order: each column
        converted by its processor, datetimes once per distinct value, dicts and lists of a
        plain JSON column straight through its serializer."""
        if len(values) == 1:  # most log statements: one row, no per-column lists
            one = tuple(
                v if p is None else p(v) for v, p in zip(values[0], self.processors, strict=True)
            )
            return [one if self.positional else dict(zip(self.names, one, strict=True))]
        if any(p is not None for p in self.processors) and values:
            # Transposed and back by zip (C), so only the converted columns cost Python work.
            columns: list[Any] = list(zip(*values, strict=True))
            for i, (process, memo, direct) in enumerate(
                zip(self.processors, self.memo, self.json_direct, strict=True)
            ):
                if process is None:
                    continue
                if memo:
                    seen: dict[Any, Any] = {}
                    out = []
                    for value in columns[i]:
                        done = seen.get(value, seen)
                        if done is seen:
                            done = seen[value] = process(value)
                        out.append(done)
                    columns[i] = out
                elif direct is not None:
                    # What `process` returns for these types, without its NULL checks.
                    columns[i] = [
                        direct(v) if type(v) is dict or type(v) is list else process(v)
                        for v in columns[i]
                    ]
                else:
                    columns[i] = [process(v) for v in columns[i]]
            values = list(zip(*columns, strict=True))
        if self.positional:
            return values
        names = self.names
        return [dict(zip(names, row, strict=True)) for row in values]

    def run(self, cursor: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Execute on a DBAPI cursor (no SQLAlchemy events or error wrapping: for statements
        whose failure only ever aborts the transaction)."""
        self._execute(cursor, self.parameters(rows))

    def run_values(
        self, cursor: Any, fields: tuple[str, ...], values: Sequence[Sequence[Any]]
    ) -> None:
        """`run` for rows given as sequences of `fields` (any order of `names`), so that a
        caller making many small rows need not build a dict for each."""
        if fields != self.names:
            if sorted(fields) != sorted(self.names):
                raise KeyError(f"fields {fields} are not the statement's {self.names}")
            positions = [fields.index(n) for n in self.names]
            values = [tuple(v[i] for i in positions) for v in values]
        if values:
            self._execute(cursor, self.converted(list(values)))

    def _execute(self, cursor: Any, params: list[Any]) -> None:
        if len(params) == 1:  # execute() does less work than executemany()
            cursor.execute(self.sql, params[0])
        else:
            cursor.executemany(self.sql, params)


def _json_serializer(impl: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The serializer that SQLAlchemy's own JSON bind processor calls, when that processor
    does nothing else with a dict or a list: a JSON type whose processor is the generic one
    (SQLite's; psycopg's JSON and JSONB build another, which wraps the value) with no string
    conversion after it. For other types, None."""
    kind = type(impl)
    if not (
        issubclass(kind, JSON)
        and kind.bind_processor is JSON.bind_processor
        and kind._make_bind_processor is JSON._make_bind_processor
    ):
        return None
    if impl._str_impl.bind_processor(dialect) is not None:
        return None
    serializer: Callable[[Any], Any] = getattr(dialect, "_json_serializer", None) or json.dumps
    return serializer


# SQLite's DATETIME text (SQLAlchemy's default storage format for it), and what the check of
# `_utc_text` compares on: whole seconds, microseconds, other zones, a year below 1000.
_SQLITE_DATETIME = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)
_SAMPLES = (
    datetime(2026, 12, 4, 14, 2, 10, 907534, tzinfo=UTC),
    datetime(2026, 12, 4, 14, 2, 10, tzinfo=UTC),
    datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    datetime(2026, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=14))),
)


def _utc_text(
    column_type: Any, dialect: Dialect, process: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """For a `UTCDateTime` column on SQLite, a converter that gives `process`'s text for an
    aware datetime from `datetime.isoformat` (C) instead of `process`'s chain (the type's
    `process_bind_param`, then SQLite's DATETIME formatting through a dict per value): 5 us
    against 1.4 us, and every log entry has its own `created_at`. Anything else, and any
    column whose storage format is not the one known here, goes to `process` itself; so
    does every column if `process` gives other text for the samples above."""
    if dialect.name != "sqlite" or not isinstance(column_type, UTCDateTime):
        return process
    impl = column_type.impl_instance.dialect_impl(dialect)
    if getattr(impl, "_storage_format", None) != _SQLITE_DATETIME:
        return process

    def convert(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is not None:
            # "YYYY-MM-DD HH:MM:SS.ffffff+00:00": the text without the offset
            return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]
        return process(value)

    try:
        same = all(convert(v) == process(v) for v in _SAMPLES)
    except Exception:  # any surprise: keep SQLAlchemy's own conversion
        same = False
    return convert if same else process


def _is_datetime(column_type: Any) -> bool:
    """A DateTime column, or a type decorating one (UTCDateTime)."""
    return isinstance(column_type, DateTime) or isinstance(
        getattr(column_type, "impl", None), DateTime
    )


# Per dialect object (its bind processors carry the engine's JSON serializer), then per table
# and column set; None: that column set takes the Core path.
_INSERTS: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, frozenset[str]], Prepared | None]] = (
    weakref.WeakKeyDictionary()
)
_INSERTS_LOCK = threading.Lock()


def _prepare_insert(dialect: Dialect, table: Table, keys: frozenset[str]) -> Prepared | None:
    prepared = Prepared.of(table.insert(), dialect, sorted(keys))
    if set(prepared.names) != keys:
        # The compiled insert wants a column the rows do not give (a Python-side default):
        # only SQLAlchemy's own execution fills those in.
        return None
    return prepared


def insert_many(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """`conn.execute(table.insert(), rows)`, with the per-row Python work cut to the columns'
    own conversions. Every row must have the same keys (column names)."""
    if not rows:
        return
    keys = frozenset(rows[0])
    cache_key = (table.name, keys)
    with _INSERTS_LOCK:
        per_dialect = _INSERTS.setdefault(conn.dialect, {})
        found = cache_key in per_dialect
        prepared = per_dialect.get(cache_key)
    if not found:
        prepared = _prepare_insert(conn.dialect, table, keys)
        with _INSERTS_LOCK:
            per_dialect[cache_key] = prepared
    if prepared is None or any(len(row) != len(keys) for row in rows):
        conn.execute(table.insert(), list(rows))
        return
    # Through SQLAlchemy's driver-level execute (not a bare cursor): its events run and a
    # constraint violation arrives as sqlalchemy.exc.IntegrityError, as callers expect.
    conn.exec_driver_sql(prepared.sql, prepared.parameters(rows))
