"""Export requests: validation of the client's JSON into a normalised :class:`ExportSpec`.

Invariant: a spec that exists is valid against the registry — every column and filter
name is one of the dataset's, every operator is allowed for its column, and every value
has the column's type. Anything else raises :class:`SpecError` naming the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.datasets import REGISTRY, Column, Dataset, get_dataset
from shared.filenames import FILENAME_RULE, is_valid_filename

MAX_IN_VALUES = 1000
MAX_TEXT_VALUE = 1000
MAX_SHOWN = 60  # characters of a bad value quoted in an error message
MAX_NUMERIC_EXPONENT = 1000  # far beyond any stored number; PostgreSQL's numeric overflows near 131072
DELIVERIES = ("auto", "inline", "async")
_TOP_LEVEL = {"dataset", "columns", "filters", "format", "delivery", "filename", "csv"}
_CSV_OPTIONS = {"bom", "neutralize_formulas"}


class SpecError(ValueError):
    """The request is invalid; ``field`` names the part of the request at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ExportSpec:
    """A validated export request.

    Attributes:
        dataset: the registered dataset's name.
        columns: the columns to export, in the order asked.
        filters: ``{column: {operator: value}}`` with values already checked (JSON types).
        delivery: ``auto``, ``inline`` or ``async``.
        filename: the download's file name.
        bom: start the file with a UTF-8 byte order mark (for Excel).
        neutralize_formulas: prefix cells that a spreadsheet would run as a formula with ``'``.
    """

    dataset: str
    columns: tuple[str, ...]
    filters: dict[str, dict[str, Any]]
    delivery: str = "auto"
    filename: str = "export.csv"
    bom: bool = False
    neutralize_formulas: bool = True

    @property
    def source(self) -> Dataset:
        """The registry entry of this spec's dataset."""
        return REGISTRY[self.dataset]

    def to_json(self) -> dict[str, Any]:
        """The normalised request, as stored with the export and echoed to clients."""
        return {
            "dataset": self.dataset,
            "columns": list(self.columns),
            "filters": self.filters,
            "format": "csv",
            "delivery": self.delivery,
            "filename": self.filename,
            "csv": {"bom": self.bom, "neutralize_formulas": self.neutralize_formulas},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportSpec:
        """Rebuild a spec from :meth:`to_json` output (validating it again)."""
        return parse_spec(data)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _numeric(value: Any, where: str) -> str | int | float:
    """A numeric filter value: a JSON number, or a string holding a finite decimal in range."""
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise SpecError(f"{where}: expected a number, got {_show(value)}", where) from None
    elif _is_number(value):
        if value != value or value in (float("inf"), float("-inf")):
            raise SpecError(f"{where}: expected a finite number, got {_show(value)}", where)
        number = Decimal(str(value))
    else:
        raise SpecError(f"{where}: expected a number, got {_show(value)}", where)
    if not number.is_finite():
        raise SpecError(f"{where}: expected a finite number, got {_show(value)}", where)
    if number and not -MAX_NUMERIC_EXPONENT <= number.adjusted() <= MAX_NUMERIC_EXPONENT:
        raise SpecError(f"{where}: {_show(value)} is out of range (|exponent| at most {MAX_NUMERIC_EXPONENT})", where)
    return str(number) if isinstance(value, str) else value


def _timestamp(value: Any, where: str) -> str:
    """An ISO 8601 timestamp, normalised to UTC (no offset means UTC)."""
    if not isinstance(value, str):
        raise SpecError(f"{where}: expected an ISO 8601 timestamp string, got {_show(value)}", where)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise SpecError(f"{where}: {_show(value)} is not an ISO 8601 timestamp", where) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # documented: no offset means UTC
    try:
        return parsed.astimezone(UTC).isoformat()
    except OverflowError:
        raise SpecError(f"{where}: {_show(value)} is out of range in UTC", where) from None


def _check_value(column: Column, op: str, value: Any, where: str) -> Any:
    """Validate one filter value for ``column``; return its normalised JSON form."""
    kind = column.type
    if kind in ("bigint", "integer"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f"{where}: expected an integer, got {_show(value)}", where)
        limit = 2**63 if kind == "bigint" else 2**31
        if not -limit <= value < limit:
            raise SpecError(f"{where}: {_show(value)} is out of range for {kind}", where)
        return value
    if kind == "numeric":
        return _numeric(value, where)
    if kind == "timestamptz":
        return _timestamp(value, where)
    if kind == "text":
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected a string, got {_show(value)}", where)
        if len(value) > MAX_TEXT_VALUE:
            raise SpecError(f"{where}: longer than {MAX_TEXT_VALUE} characters", where)
        if "\x00" in value:
            raise SpecError(f"{where}: NUL characters are not allowed", where)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError(f"{where}: not valid Unicode (a lone surrogate)", where) from None
        if op == "contains" and value == "":
            raise SpecError(f"{where}: must not be empty", where)
        return value
    raise SpecError(f"{where}: column {column.name} cannot be filtered", where)


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


def parse_spec(body: Any) -> ExportSpec:
    """Validate a ``POST /exports`` body.

    Args:
        body: the decoded JSON body.

    Returns:
        The normalised spec.

    Raises:
        SpecError: the body is not an object, or names something the registry does not allow.
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
        raise SpecError(f"unknown dataset {_show(name)} (available: {', '.join(sorted(REGISTRY))})", "dataset")
    if body.get("format", "csv") != "csv":
        raise SpecError(f"unknown format {_show(body.get('format'))} (available: csv)", "format")

    columns = body.get("columns")
    if columns is None:
        columns = list(dataset.default_columns or dataset.column_names)
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
    if filename is None:
        filename = f"{dataset.name}.csv"
    elif isinstance(filename, str) and not filename.lower().endswith(".csv"):
        filename += ".csv"
    if not is_valid_filename(filename):
        raise SpecError(f"filename must be {FILENAME_RULE}, ending in .csv (added when missing)", "filename")

    csv_options = body.get("csv")
    if csv_options is None:
        csv_options = {}
    if not isinstance(csv_options, dict):
        raise SpecError('csv must be an object like {"bom": false, "neutralize_formulas": true}', "csv")
    unknown = sorted(set(csv_options) - _CSV_OPTIONS)
    if unknown:
        raise SpecError(
            f"unknown csv option {_show(unknown[0])} (allowed: bom, neutralize_formulas)", f"csv.{unknown[0]}"
        )

    return ExportSpec(
        dataset=dataset.name,
        columns=tuple(columns),
        filters=_parse_filters(dataset, body.get("filters")),
        delivery=delivery,
        filename=filename,
        bom=_parse_bool(csv_options.get("bom"), "csv.bom", False),
        neutralize_formulas=_parse_bool(csv_options.get("neutralize_formulas"), "csv.neutralize_formulas", True),
    )
