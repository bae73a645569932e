"""Many-row inserts on the raw driver, for the ingest paths (records pulled from peers, bulk
submit and `signet import`).

`connection.execute(table.insert(), rows)` is already one `executemany`, but SQLAlchemy still
works per row and per column in Python before the driver sees anything: it builds each row's
parameters from the compiled statement (`construct_params`) and calls every column's bind
processor through generic wrappers. At 1,000 rows a page that was as much CPU as verifying the
rows' signatures.

`insert_many` does the same insert with the same conversions, but prepared once per dialect and
column set: the statement compiled by SQLAlchemy for that dialect (so placeholders, casts and
quoting are SQLAlchemy's), each column's own bind processor (the exact function SQLAlchemy would
call: UTC datetimes, JSON through the engine's serializer, booleans), and the rows handed to
the driver as plain tuples or dicts through `exec_driver_sql`. Datetime values repeat a lot in
a page (every row's `created_at` is the same `now`), so their converted form is computed once
per distinct value in a call.

Only for rows that name every column the insert needs: a column with a Python-side default
that the rows leave out takes the ordinary Core path (which fills defaults), so the result is
always what `connection.execute(table.insert(), rows)` would store.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, Table

__all__ = ["insert_many"]


@dataclass(frozen=True)
class _Prepared:
    sql: str
    names: tuple[str, ...]  # the rows' keys, in the statement's parameter order
    positional: bool  # qmark-style drivers (sqlite3) take tuples, pyformat ones dicts
    processors: tuple[Callable[[Any], Any] | None, ...]  # per name
    memo: tuple[bool, ...]  # per name: cache the converted value per distinct input (datetimes)


# Per dialect object (its bind processors carry the engine's JSON serializer), then per table
# and column set; None: that column set takes the Core path.
_CACHE: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, frozenset[str]], _Prepared | None]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()


def _prepare(conn: Connection, table: Table, keys: frozenset[str]) -> _Prepared | None:
    dialect = conn.dialect
    compiled = table.insert().compile(dialect=dialect, column_keys=sorted(keys))
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
    if set(names) != keys:
        # The compiled insert wants a column the rows do not give (a Python-side default):
        # only SQLAlchemy's own execution fills those in.
        return None
    processors = []
    memo = []
    for name in names:
        column_type = table.c[name].type
        processors.append(column_type.dialect_impl(dialect).bind_processor(dialect))
        memo.append(_is_datetime(column_type))
    return _Prepared(compiled.string, names, compiled.positional, tuple(processors), tuple(memo))


def _is_datetime(column_type: Any) -> bool:
    """A DateTime column, or a type decorating one (UTCDateTime)."""
    return isinstance(column_type, DateTime) or isinstance(
        getattr(column_type, "impl", None), DateTime
    )


def insert_many(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """`conn.execute(table.insert(), rows)`, with the per-row Python work cut to the columns'
    own conversions. Every row must have the same keys (column names)."""
    if not rows:
        return
    keys = frozenset(rows[0])
    cache_key = (table.name, keys)
    with _CACHE_LOCK:
        per_dialect = _CACHE.setdefault(conn.dialect, {})
        found = cache_key in per_dialect
        prepared = per_dialect.get(cache_key)
    if not found:
        prepared = _prepare(conn, table, keys)
        with _CACHE_LOCK:
            per_dialect[cache_key] = prepared
    if prepared is None or any(len(row) != len(keys) for row in rows):
        conn.execute(table.insert(), list(rows))
        return
    columns = []
    for name, process, memo in zip(prepared.names, prepared.processors, prepared.memo, strict=True):
        values = [row[name] for row in rows]  # KeyError: a row lacks a column the first has
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
    params: list[Any]
    if prepared.positional:
        params = list(zip(*columns, strict=True))
    else:
        params = [
            dict(zip(prepared.names, values, strict=True)) for values in zip(*columns, strict=True)
        ]
    conn.exec_driver_sql(prepared.sql, params)
