"""``--filter COLUMN=[OP:]VALUE`` expressions into the API's filter JSON.

Invariant: parsing is pure (no network). The caller passes each column's type as
``GET /datasets`` lists it; values become JSON numbers only for numeric columns and stay
strings otherwise (text, timestamps), so the API's own validation decides everything else
and names the problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

NUMERIC_TYPES = frozenset({"bigint", "integer", "smallint", "numeric", "real", "double precision"})
OPERATORS = ("eq", "in", "contains", "gte", "gt", "lte", "lt")  # a prefix that is none of these is part of the value
DEFAULT_OPERATOR = "eq"

Filters = dict[str, dict[str, Any]]


class FilterSyntaxError(ValueError):
    """A ``--filter`` or ``--filter-json`` argument cannot be read; the message says why."""


def _number(text: str, expression: str) -> int | float:
    candidate = text.strip()
    try:
        return int(candidate)
    except ValueError:
        pass
    try:
        value = float(candidate)
    except ValueError:
        raise FilterSyntaxError(f"filter {expression!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise FilterSyntaxError(f"filter {expression!r}: {text!r} is not a finite number")
    return value


def parse_filter(expression: str, column_types: Mapping[str, str]) -> tuple[str, str, Any]:
    """Read one ``COLUMN=[OP:]VALUE`` expression.

    ``OP`` is one of :data:`OPERATORS` (``eq`` when absent, so ``name=a:b`` means equal to
    ``a:b``; write ``name=eq:in:x`` to compare with a value that starts like an operator).
    ``in:`` takes a comma-separated list.

    Args:
        expression: e.g. ``category=in:books,toys``, ``price=gte:10``, ``name=contains:ultra``.
        column_types: column name to type, from ``GET /datasets``; a column missing here is
            sent with string values and left to the API to judge.

    Returns:
        ``(column, operator, value)`` with the value as it goes into the JSON body.

    Raises:
        FilterSyntaxError: no ``=``, an empty column, an empty ``in`` list, or a bad number.
    """
    column, equals, rest = expression.partition("=")
    column = column.strip()
    if not equals or not column:
        raise FilterSyntaxError(f"filter {expression!r}: expected COLUMN=[OP:]VALUE, e.g. price=gte:10")
    op, colon, value = rest.partition(":")
    if not colon or op not in OPERATORS:
        op, value = DEFAULT_OPERATOR, rest
    numeric = column_types.get(column) in NUMERIC_TYPES
    if op == "in":
        items = value.split(",")
        if value == "" or (numeric and any(item.strip() == "" for item in items)):
            raise FilterSyntaxError(f"filter {expression!r}: 'in:' needs a comma-separated list of values")
        return column, op, [_number(item, expression) if numeric else item for item in items]
    return column, op, _number(value, expression) if numeric else value


def merge_filters(base: Filters, extra: Mapping[str, Any]) -> Filters:
    """Return ``base`` with ``extra``'s operators added per column (``extra`` wins a tie)."""
    merged = {column: dict(conditions) for column, conditions in base.items()}
    for column, conditions in extra.items():
        if not isinstance(conditions, Mapping):
            raise FilterSyntaxError(f'filter for {column!r} must be an object like {{"gte": 10}}')
        merged.setdefault(column, {}).update(conditions)
    return merged


def build_filters(expressions: Iterable[str], filter_json: str | None, column_types: Mapping[str, str]) -> Filters:
    """Combine every ``--filter`` and an optional ``--filter-json`` into one filters object.

    Conditions on the same column are combined (``price=gte:10`` and ``price=lt:50`` give
    ``{"price": {"gte": 10, "lt": 50}}``); ``--filter-json`` is applied last.

    Raises:
        FilterSyntaxError: an expression is malformed, or the JSON is not an object of objects.
    """
    filters: Filters = {}
    for expression in expressions:
        column, op, value = parse_filter(expression, column_types)
        filters = merge_filters(filters, {column: {op: value}})
    if filter_json:
        try:
            extra = json.loads(filter_json)
        except ValueError as exc:
            raise FilterSyntaxError(f"--filter-json is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise FilterSyntaxError('--filter-json must be an object like {"price": {"gte": 10}}')
        filters = merge_filters(filters, extra)
    return filters


def column_types(datasets: Iterable[Mapping[str, Any]], dataset: str) -> dict[str, str]:
    """The ``{column: type}`` map of ``dataset`` in a ``GET /datasets`` answer (empty if absent)."""
    for entry in datasets:
        if entry.get("name") == dataset:
            return {c["name"]: c["type"] for c in entry.get("columns", [])}
    return {}
