"""Steering SQLite's query planner away from an index that looks selective and is not.

SQLite chooses plans without statistics (Signet never runs ANALYZE on SQLite), so it treats
every equality on an indexed column as selective. For a query that pages through `signal` in
row-id order, `status = 'active'` then makes it read *every* active row through
`ix_signal_status_valid_until` and sort them all in a temporary B-tree to return the first
few thousand: 0.4-0.5 s a page at 5M signals, and a worker's start-up index load (one such page
per 10,000 signals) went quadratic, over 5 minutes at 5M (docs/scaling.md). On a node's own
list nearly every row is active, so walking the primary key and filtering is the right plan.

`unindexed(column)` keeps a condition out of SQLite's index choice: rendered with SQLite's
unary `+` (documented for exactly this: "the unary + operator ... disqualifies the term from
constraining an index"). Other dialects get the plain column: PostgreSQL plans from statistics.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["unindexed"]


class unindexed(FunctionElement[Any]):  # lower case: it reads as SQL, like func.*
    """`column`, which SQLite may not use to pick an index."""

    inherit_cache = True
    name = "unindexed"

    def __init__(self, column: ColumnElement[Any] | Any) -> None:  # Any: sqlmodel's col()
        super().__init__(column)
        self.type = column.type  # comparisons bind their values as the column's type


@compiles(unindexed)
def _plain(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(unindexed, "sqlite")
def _sqlite(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)
