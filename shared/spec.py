"""Export requests: validation of the client's JSON into a normalised :class:`ExportSpec`.

Invariant: a spec that exists is valid against the registry — every column and filter
name is one of the dataset's, every operator is allowed for its column, and every value
has the column's type. Anything else raises :class:`SpecError` naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.datasets import Column, Dataset, get_dataset, registry
from shared.filenames import FILENAME_RULE, is_valid_filename
from shared.formats import COMPRESSIBLE, COMPRESSIONS, FORMATS, Output
from shared.formats import OPTIONS as _OPTIONS
from shared.pgtypes import BOOLEAN, INTEGER, ValueProblem, filter_value
from shared.pgtypes import show as _show

MAX_IN_VALUES = 1000
DELIVERIES = ("auto", "inline", "async")
# "notify" (a webhook) is read by the API (shared/webhooks.py), not part of the spec
_TOP_LEVEL = {"dataset", "columns", "filters", "format", "compression", "delivery", "filename", "csv", "xlsx", "notify"}


class SpecError(ValueError):
    """The request is invalid; ``field`` names the part of the request at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def xlsx_too_many_rows(rows: int, limit: int) -> str:
    """The message of an XLSX export over the configured maximum."""
    return (
        f"{rows if rows <= limit else f'more than {limit}'} rows match, more than an xlsx export may hold"
        f" ({limit}, SPILLWAY_XLSX_MAX_ROWS); use format csv or jsonl, or filter the rows"
    )


class ScopeError(SpecError):
    """The dataset is scoped by a key attribute the caller's key does not have (403)."""


@dataclass(frozen=True)
class ExportSpec:
    """A validated export request.

    Attributes:
        dataset: the registered dataset's name.
        columns: the columns to export, in the order asked.
        filters: ``{column: {operator: value}}`` with values checked and normalised: integers
            and booleans as JSON, the rest as the text PostgreSQL reads back with a cast to the
            column's type (lists for ``in``).
        delivery: ``auto``, ``inline`` or ``async``.
        filename: the download's file name (ending in the format's extension).
        format: ``csv``, ``jsonl`` or ``xlsx``.
        compression: ``none`` or ``gzip`` (csv and jsonl only).
        bom: start a CSV with a UTF-8 byte order mark (for Excel).
        neutralize_formulas: keep text that a spreadsheet would run as a formula inert — in a
            CSV prefixed with ``'``, in an XLSX stored as text with Excel's quote prefix; a
            JSON Lines file is a machine format and is never changed.
        scope: ``{column: value}`` of the dataset's row scope, bound from the calling key's
            attributes when the export was requested (never from the request body).
    """

    dataset: str
    columns: tuple[str, ...]
    filters: dict[str, dict[str, Any]]
    delivery: str = "auto"
    filename: str = "export.csv"
    bom: bool = False
    neutralize_formulas: bool = True
    scope: Mapping[str, str] = field(default_factory=dict)
    format: str = "csv"
    compression: str = "none"

    @property
    def output(self) -> Output:
        """The file's format and compression."""
        return Output(self.format, self.compression)

    @property
    def source(self) -> Dataset:
        """The registry entry of this spec's dataset.

        Raises:
            SpecError: the datasets file no longer has it (a permanent failure of the export).
        """
        dataset = get_dataset(self.dataset)
        if dataset is None:
            raise SpecError(f"dataset {self.dataset!r} is no longer in the datasets file", "dataset")
        return dataset

    def to_json(self) -> dict[str, Any]:
        """The normalised request, as stored with the export and echoed to clients."""
        return {
            "dataset": self.dataset,
            "columns": list(self.columns),
            "filters": self.filters,
            "format": self.format,
            **({"compression": self.compression} if self.format in COMPRESSIBLE else {}),
            "delivery": self.delivery,
            "filename": self.filename,
            **self._options(),
            **({"scope": dict(self.scope)} if self.scope else {}),
        }

    def _options(self) -> dict[str, Any]:
        values = {"bom": self.bom, "neutralize_formulas": self.neutralize_formulas}
        names = _OPTIONS.get(self.format)
        return {self.format: {name: values[name] for name in names}} if names else {}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportSpec:
        """Rebuild a spec from :meth:`to_json` output (validating it again, the stored scope
        against the dataset's scope columns as they are now)."""
        request = {k: v for k, v in data.items() if k != "scope"}
        stored = data.get("scope") or {}
        if not isinstance(stored, dict):
            raise SpecError("the stored scope is not an object", "scope")
        return parse_spec(request, scope_values=stored)


def _check_value(column: Column, op: str, value: Any, where: str) -> str | int | bool:
    """Validate one filter value for ``column``; return it normalised, as JSON that validates
    again (a stored spec is checked again by the worker): integers and booleans as such,
    everything else as the text PostgreSQL reads back with a cast to the column's type."""
    try:
        text = filter_value(column.type, op, value)
    except ValueProblem as exc:
        raise SpecError(f"{where}: {exc}", where) from None
    if column.kind is INTEGER:
        return int(text)
    if column.kind is BOOLEAN:
        return text == "true"
    return text


def _typed(column: Column, text: str) -> str | int | bool:
    """A key attribute (always text) as the JSON value a filter on ``column`` would carry."""
    text = str(text)  # an attribute edited by hand in the database may be another JSON type
    if column.kind is INTEGER and re.fullmatch(r"-?[0-9]{1,20}", text):
        return int(text)
    if column.kind is BOOLEAN and text in ("true", "false"):
        return text == "true"
    return text


def _scope(dataset: Dataset, attributes: Mapping[str, str], stored: bool) -> dict[str, str]:
    """The dataset's row scope bound to the caller's attributes (or to the stored values).

    Raises:
        ScopeError: an attribute the scope needs is missing, or does not fit its column.
    """
    scope: dict[str, str] = {}
    if stored and set(attributes) != {rule.column.name for rule in dataset.scope}:
        raise SpecError(f"dataset {dataset.name!r} is scoped differently from when this export was requested", "scope")
    for rule in dataset.scope:
        name = rule.column.name if stored else rule.attribute
        if name not in attributes:
            raise ScopeError(
                f"dataset {dataset.name!r} is scoped by the key attribute {rule.attribute!r}, which this key does"
                f" not have (create a key with --attr {rule.attribute}=<value>)",
                "dataset",
            )
        try:
            scope[rule.column.name] = filter_value(rule.column.type, "eq", _typed(rule.column, attributes[name]))
        except ValueProblem as exc:
            raise ScopeError(
                f"the key attribute {rule.attribute!r} does not fit column {rule.column.name!r}: {exc}", "dataset"
            ) from None
    return scope


def _parse_filters(dataset: Dataset, filters: Any) -> dict[str, dict[str, Any]]:
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise SpecError('filters must be an object like {"column": {"operator": value}}', "filters")
    result: dict[str, dict[str, Any]] = {}
    for name, condition in filters.items():
        column = dataset.find_column(name)
        if column is None:
            raise SpecError(f"unknown filter column {_show(name)} for dataset {dataset.name!r}", f"filters.{name}")
        if not column.filters:
            raise SpecError(f"column {_show(name)} cannot be filtered", f"filters.{name}")
        if not isinstance(condition, dict) or not condition:
            raise SpecError(f'filters.{name} must be an object like {{"eq": value}}', f"filters.{name}")
        result[name] = {}
        for op, value in condition.items():
            where = f"filters.{name}.{op}"
            if op not in column.filters:
                allowed = ", ".join(column.filters)
                raise SpecError(f"unknown operator {_show(op)} for column {_show(name)} (allowed: {allowed})", where)
            if op == "in":
                if not isinstance(value, list) or not value:
                    raise SpecError(f"{where}: expected a non-empty list", where)
                if len(value) > MAX_IN_VALUES:
                    raise SpecError(f"{where}: at most {MAX_IN_VALUES} values", where)
                result[name][op] = [_check_value(column, op, v, f"{where}[{i}]") for i, v in enumerate(value)]
            else:
                result[name][op] = _check_value(column, op, value, where)
    return result


def _parse_bool(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"{where} must be true or false, got {_show(value)}", where)
    return value


def parse_spec(
    body: Any, attributes: Mapping[str, str] | None = None, scope_values: Mapping[str, str] | None = None
) -> ExportSpec:
    """Validate a ``POST /exports`` body.

    Args:
        body: the decoded JSON body.
        attributes: the calling key's attributes, which a scoped dataset's scope binds to.
        scope_values: instead of ``attributes``, a stored spec's scope (``{column: value}``).

    Returns:
        The normalised spec.

    Raises:
        SpecError: the body is not an object, or names something the registry does not allow.
        ScopeError: the dataset is scoped by an attribute the key does not have.
    """
    if not isinstance(body, dict):
        raise SpecError("the request body must be a JSON object")
    unknown = sorted(set(body) - _TOP_LEVEL)
    if unknown:
        raise SpecError(f"unknown field {_show(unknown[0])} (allowed: {', '.join(sorted(_TOP_LEVEL))})", unknown[0])
    name = body.get("dataset")
    if not isinstance(name, str) or not name:
        raise SpecError("dataset is required (a dataset name; see GET /datasets)", "dataset")
    dataset = get_dataset(name)
    if dataset is None:
        raise SpecError(f"unknown dataset {_show(name)} (available: {', '.join(sorted(registry()))})", "dataset")
    fmt = body.get("format", "csv")
    if fmt not in FORMATS:
        raise SpecError(f"unknown format {_show(fmt)} (available: {', '.join(FORMATS)})", "format")
    compression = body.get("compression", "none")
    if compression not in COMPRESSIONS:
        raise SpecError(
            f"unknown compression {_show(compression)} (available: {', '.join(COMPRESSIONS)})", "compression"
        )
    if compression != "none" and fmt not in COMPRESSIBLE:
        raise SpecError(
            f"compression applies to {' and '.join(COMPRESSIBLE)}; an {fmt} file is compressed already", "compression"
        )
    output = Output(fmt, compression)

    columns = body.get("columns")
    if columns is None:
        columns = list(dataset.column_names)
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise SpecError("columns must be a non-empty list of column names", "columns")
    for column in columns:
        if dataset.find_column(column) is None:
            raise SpecError(f"unknown column {_show(column)} for dataset {dataset.name!r}", "columns")
    if len(set(columns)) != len(columns):
        duplicate = next(c for c in columns if columns.count(c) > 1)
        raise SpecError(f"column {_show(duplicate)} is listed twice", "columns")

    delivery = body.get("delivery", "auto")
    if delivery not in DELIVERIES:
        raise SpecError(f"unknown delivery {_show(delivery)} (allowed: {', '.join(DELIVERIES)})", "delivery")

    filename = body.get("filename")
    extension = output.extension
    if filename is None:
        filename = f"{dataset.name}{extension}"
    elif isinstance(filename, str) and not filename.lower().endswith(extension):
        # "report.csv" compressed is "report.csv.gz", not "report.csv.csv.gz"
        stem = extension.removesuffix(".gz")
        filename += ".gz" if extension != stem and filename.lower().endswith(stem) else extension
    if not is_valid_filename(filename):
        raise SpecError(f"filename must be {FILENAME_RULE}, ending in {extension} (added when missing)", "filename")

    options = _parse_options(body, fmt)

    return ExportSpec(
        dataset=dataset.name,
        columns=tuple(columns),
        filters=_parse_filters(dataset, body.get("filters")),
        delivery=delivery,
        filename=filename,
        bom=_parse_bool(options.get("bom"), f"{fmt}.bom", False),
        neutralize_formulas=_parse_bool(
            options.get("neutralize_formulas"), f"{fmt}.neutralize_formulas", fmt in _OPTIONS
        ),
        scope=_scope(dataset, scope_values if scope_values is not None else attributes or {}, scope_values is not None),
        format=fmt,
        compression=compression,
    )


def _parse_options(body: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The options object of the chosen format (``csv``, ``xlsx``); another format's is an error."""
    for other in _OPTIONS:
        if other != fmt and body.get(other) is not None:
            raise SpecError(f"{other} options apply to format {other}, not {fmt}", other)
    options = body.get(fmt)
    allowed = _OPTIONS.get(fmt, ())
    if options is None:
        return {}
    if not isinstance(options, dict):
        example = ", ".join(f'"{name}": false' for name in allowed)
        raise SpecError(f"{fmt} must be an object like {{{example}}}", fmt)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SpecError(
            f"unknown {fmt} option {_show(unknown[0])} (allowed: {', '.join(allowed)})", f"{fmt}.{unknown[0]}"
        )
    return options
