"""Reading state rows as the typed records of :mod:`shared.models`.

Invariant: a record is read by naming its fields as columns (never ``SELECT *``), so a
migration that adds a column changes no reader until its record declares it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row, tuple_row

from shared.models import field_names

R = TypeVar("R")
Params = Sequence[Any] | dict[str, Any]
Query = str | sql.SQL | sql.Composed


def columns(record: type[Any], alias: str | None = None) -> sql.Composed:
    """The record's fields as a column list, optionally qualified by a table alias."""
    names = field_names(record)
    if alias is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(alias, n) for n in names)


def fetch_one(conn: psycopg.Connection[Any], record: type[R], query: Query, params: Params = ()) -> R | None:
    """Run ``query`` and return its first row as a ``record``, or None."""
    with conn.cursor(row_factory=class_row(record)) as cur:
        found: R | None = cur.execute(query, params).fetchone()
    return found


def fetch_all(conn: psycopg.Connection[Any], record: type[R], query: Query, params: Params = ()) -> list[R]:
    """Run ``query`` and return every row as a ``record``."""
    with conn.cursor(row_factory=class_row(record)) as cur:
        rows: list[R] = cur.execute(query, params).fetchall()
    return rows


def fetch_tuples(conn: psycopg.Connection[Any], query: Query, params: Params = ()) -> list[tuple[Any, ...]]:
    """Run ``query`` and return its rows as tuples, whatever the connection's row factory."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchall()


def fetch_value(conn: psycopg.Connection[Any], query: Query, params: Params = ()) -> Any | None:
    """Run ``query`` and return the first column of its first row, or None when there is no row."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(query, params).fetchone()
    return row[0] if row is not None else None
