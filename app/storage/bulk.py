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
value in a call.

`insert_many` is for rows that name every column the insert needs: a column with a Python-side
default that the rows leave out takes the ordinary Core path (which fills defaults), so the
result is always what `connection.execute(table.insert(), rows)` would store.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, Insert, LargeBinary, Table, Update

__all__ = ["Prepared", "insert_many"]


@dataclass(frozen=True)
class Prepared:
    """A statement compiled for one dialect, with its parameters' conversions."""

    sql: str
    names: tuple[str, ...]  # the rows' keys, in the statement's parameter order
    positional: bool  # qmark-style drivers (sqlite3) take tuples, pyformat ones dicts
    processors: tuple[Callable[[Any], Any] | None, ...]  # per name
    memo: tuple[bool, ...]  # per name: cache the converted value per distinct input (datetimes)

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
        for name in names:
            if name in columns:
                column_type = columns[name].type
                if dialect.name == "sqlite" and isinstance(column_type, LargeBinary):
                    # SQLAlchemy wraps each value in sqlite3.Binary (a memoryview); sqlite3
                    # stores bytes as the same BLOB. Skipping it was ~3 % of a page from a
                    # peer (every Merkle node's hash).
                    processors.append(None)
                else:
                    processors.append(column_type.dialect_impl(dialect).bind_processor(dialect))
                memo.append(_is_datetime(column_type))
            else:
                processors.append(None)
                memo.append(False)
        return cls(compiled.string, names, compiled.positional, tuple(processors), tuple(memo))

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """The driver's parameters for `rows` (dicts keyed by `names`), converted per column."""
        if len(rows) == 1:  # most log statements: one row, no per-column lists
            row = rows[0]
            one = tuple(
                row[n] if p is None else p(row[n])
                for n, p in zip(self.names, self.processors, strict=True)
            )
            return [one if self.positional else dict(zip(self.names, one, strict=True))]
        columns: list[list[Any]] = []
        for name, process, memo in zip(self.names, self.processors, self.memo, strict=True):
            # KeyError: a row lacks a column the first has.
            values: list[Any] = [row[name] for row in rows]
            if process is not None:
                if memo:
                    seen: dict[Any, Any] = {}
                    converted = []
                    for value in values:
                        out = seen.get(value, seen)
                        if out is seen:
                            out = seen[value] = process(value)
                        converted.append(out)
                    values = converted
                else:
                    values = [process(value) for value in values]
            columns.append(values)
        if self.positional:
            return list(zip(*columns, strict=True))
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]

    def run(self, cursor: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Execute on a DBAPI cursor (no SQLAlchemy events or error wrapping: for statements
        whose failure only ever aborts the transaction)."""
        params = self.parameters(rows)
        if len(params) == 1:  # execute() does less work than executemany()
            cursor.execute(self.sql, params[0])
        else:
            cursor.executemany(self.sql, params)


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
