"""SQL for exports, composed only with ``psycopg.sql`` from the dataset registry.

Invariant: identifiers come from :mod:`shared.datasets`, values always travel as query
parameters, and the same spec renders the same bytes whichever tier runs it: the CSV is
produced by PostgreSQL's ``COPY ... (FORMAT csv)`` over :func:`select_list`, whose
expressions fix every rendering choice (UTC ISO 8601 timestamps, JSON arrays, formula
neutralisation).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from psycopg import sql

from shared.datasets import Column, Dataset
from shared.spec import ExportSpec

# Cells starting with these are run as formulas by spreadsheets (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# ISO 8601 with microseconds, always UTC ("Z"): 27 characters for years 1000-9999.
_TIMESTAMP_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_TIMESTAMP_WIDTH = 27
_OPERATORS = {"eq": "=", "gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
_CASTS = {"bigint": "bigint", "integer": "integer", "numeric": "numeric", "text": "text",
          "timestamptz": "timestamptz"}
BOM = "\ufeff".encode()


def _render(column: Column, neutralize: bool) -> sql.Composable:
    ident = sql.Identifier(column.name)
    if column.type == "timestamptz":
        return sql.SQL("to_char({} AT TIME ZONE 'UTC', {})").format(ident, sql.Literal(_TIMESTAMP_FORMAT))
    if column.type == "text[]":
        return sql.SQL("to_json({})::text").format(ident)
    if column.type == "text" and neutralize:
        prefixes = sql.SQL(", ").join(sql.Literal(p) for p in FORMULA_PREFIXES)
        return sql.SQL("CASE WHEN left({0}, 1) IN ({1}) THEN '''' || {0} ELSE {0} END").format(ident, prefixes)
    return ident


def select_list(dataset: Dataset, spec: ExportSpec) -> sql.Composable:
    """The SELECT list that renders the spec's columns as CSV cells."""
    return sql.SQL(", ").join(_render(dataset.column(name), spec.neutralize_formulas)  # type: ignore[arg-type]
                              for name in spec.columns)


def width_lower_bound(dataset: Dataset, spec: ExportSpec) -> sql.Composable:
    """An expression bounding each row's CSV size from below, cheaply (no value formatting).

    Text counts its bytes (quotes and prefixes only add to it), a timestamp its fixed width,
    anything else one byte when not NULL; plus the separators and the newline.
    """
    terms: list[sql.Composable] = [sql.Literal(len(spec.columns))]  # commas + newline
    for name in spec.columns:
        column = dataset.column(name)
        ident = sql.Identifier(name)
        if column.type == "text":  # type: ignore[union-attr]
            terms.append(sql.SQL("coalesce(octet_length({}), 0)").format(ident))
        elif column.type == "timestamptz":  # type: ignore[union-attr]
            terms.append(sql.SQL("({} IS NOT NULL)::int * {}").format(ident, sql.Literal(_TIMESTAMP_WIDTH)))
        elif column.type == "text[]":  # type: ignore[union-attr]
            terms.append(sql.SQL("({} IS NOT NULL)::int * 2").format(ident))  # at least "[]"
        else:
            terms.append(sql.SQL("({} IS NOT NULL)::int").format(ident))
    return sql.SQL("(") + sql.SQL(" + ").join(terms) + sql.SQL(")::int")


def where_clause(dataset: Dataset, spec: ExportSpec, lo: int | None = None,
                 hi: int | None = None) -> tuple[sql.Composable, list[Any]]:
    """The WHERE condition: the spec's filters (AND) and the key range ``(lo, hi]``."""
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    key = sql.Identifier(dataset.key)
    if lo is not None:
        conditions.append(sql.SQL("{} > %s").format(key))
        params.append(lo)
    if hi is not None:
        conditions.append(sql.SQL("{} <= %s").format(key))
        params.append(hi)
    for name, condition in spec.filters.items():
        column = dataset.column(name)
        ident = sql.Identifier(name)
        cast = sql.SQL(_CASTS[column.type])  # type: ignore[union-attr]
        for op, value in condition.items():
            if op == "in":
                conditions.append(sql.SQL("{} = ANY(%s::{}[])").format(ident, cast))
                params.append(value)
            elif op == "contains":
                conditions.append(sql.SQL("strpos(lower({}), lower(%s)) > 0").format(ident))
                params.append(value)
            else:
                conditions.append(sql.SQL("{} {} %s::{}").format(ident, sql.SQL(_OPERATORS[op]), cast))
                params.append(value)
    if not conditions:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(conditions), params


def chunk_copy(dataset: Dataset, spec: ExportSpec, lo: int | None, hi: int | None) -> tuple[sql.Composable, list[Any]]:
    """``COPY (SELECT ... WHERE range AND filters ORDER BY key) TO STDOUT (FORMAT csv)``."""
    where, params = where_clause(dataset, spec, lo, hi)
    query = sql.SQL("COPY (SELECT {} FROM {} WHERE {} ORDER BY {}) TO STDOUT (FORMAT csv)").format(
        select_list(dataset, spec), sql.Identifier(dataset.table), where, sql.Identifier(dataset.key))
    return query, params


def count_capped(dataset: Dataset, spec: ExportSpec, cap: int) -> tuple[sql.Composable, list[Any]]:
    """Count matching rows, stopping at ``cap`` (the API never runs an unbounded count)."""
    where, params = where_clause(dataset, spec)
    query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT %s) s").format(
        sql.Identifier(dataset.table), where)
    return query, [*params, cap]


def high_water_mark(dataset: Dataset) -> sql.Composable:
    """The largest key now: rows inserted later have larger keys and are not exported."""
    return sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(dataset.key), sql.Identifier(dataset.table))


def buckets(dataset: Dataset, spec: ExportSpec, hwm: int, granule: int) -> tuple[sql.Composable, list[Any]]:
    """Group the matching rows, in key order, into runs of about ``granule`` bytes (lower bound).

    Returns rows ``(hi, rows, bytes)``: the last key of the run, its row count and the sum of
    its rows' width lower bounds. The runs are contiguous in key order.
    """
    where, params = where_clause(dataset, spec, None, hwm)
    key = sql.Identifier(dataset.key)
    query = sql.SQL(
        "SELECT max(k) AS hi, count(*) AS rows, sum(w)::bigint AS bytes FROM ("
        " SELECT k, w, sum(w) OVER (ORDER BY k ROWS UNBOUNDED PRECEDING) AS cum FROM ("
        "  SELECT {key} AS k, {width} AS w FROM {table} WHERE {where}) s) c"
        " GROUP BY (cum - w) / %s ORDER BY 1"
    ).format(key=key, width=width_lower_bound(dataset, spec), table=sql.Identifier(dataset.table), where=where)
    return query, [*params, granule]


def header_bytes(spec: ExportSpec) -> bytes:
    """The header row (RFC 4180 quoting, LF line end like COPY) with the optional BOM."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(spec.columns)
    return (BOM if spec.bom else b"") + out.getvalue().encode()
