"""Column types: how each PostgreSQL type is filtered, rendered in CSV, and sized for planning.

Invariant: every column of a dataset has exactly one :class:`Kind`, decided by its base type
(a domain counts as the type under it). The kind is the one place that says which filter
operators a column has, how a filter value is checked and normalised (always to the text
PostgreSQL parses back with a cast to the base type), how the cell renders, and whether the
column may be an export's key. A type Spillway does not know is kind ``other``: exported as
PostgreSQL's own text output, never refused, never filtered.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

ORDER_OPS = ("eq", "in", "gte", "gt", "lte", "lt")
RANGE_OPS = ("eq", "gte", "gt", "lte", "lt")
TEXT_OPS = ("eq", "in", "contains", "gte", "gt", "lte", "lt")  # ranges in the column's collation
CHOICE_OPS = ("eq", "in")
OPERATORS = ("eq", "in", "gte", "gt", "lte", "lt", "contains")

MAX_TEXT_VALUE = 1000
MAX_SHOWN = 60  # characters of a bad value quoted in an error message
MAX_NUMERIC_EXPONENT = 1000  # far beyond any stored number; PostgreSQL's numeric overflows near 131072
_FLOAT_WORDS = {"nan": "NaN", "infinity": "Infinity", "-infinity": "-Infinity", "+infinity": "Infinity"}
_INTEGER_BITS = {"int2": 16, "int4": 32, "int8": 64}
_FLOAT4_RANGE = (Decimal("3.4028235e38"), Decimal("7.1e-46"))  # largest; smallest that does not round to 0
_FLOAT8_RANGE = (Decimal("1.7976931348623157e308"), Decimal("2.5e-324"))
# ISO 8601 durations: P1Y2M3DT4H5M6.5S, with signed parts as PostgreSQL's iso_8601 style writes them.
_DURATION = re.compile(
    r"P(?!$)(-?\d{1,9}Y)?(-?\d{1,9}M)?(-?\d{1,9}W)?(-?\d{1,9}D)?"
    r"(T(?=-?\d)(-?\d{1,9}H)?(-?\d{1,9}M)?(-?\d{1,9}(\.\d{1,6})?S)?)?",
    re.ASCII,
)
_MACADDR = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}", re.ASCII)


class ValueProblem(ValueError):
    """A filter value that does not fit its column; the message says why (no field name)."""


def show(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


@dataclass(frozen=True)
class Kind:
    """What Spillway does with one family of types.

    Attributes:
        name: the kind's name, as ``GET /datasets`` shows it.
        operators: the filter operators the kind allows (empty: not filterable).
        rendering: how a cell of this kind appears in the CSV (for ``GET /datasets``).
        key: whether a column of this kind may be an export's key.
        min_width: a lower bound of a non-NULL cell's CSV width, for planning.
    """

    name: str
    operators: tuple[str, ...]
    rendering: str
    key: bool = False
    min_width: int = 1


INTEGER = Kind("integer", ORDER_OPS, "decimal digits, as PostgreSQL writes them", key=True)
NUMERIC = Kind("numeric", ORDER_OPS, "decimal digits with the column's scale (1.50), NaN")
FLOAT = Kind("float", ORDER_OPS, "shortest exact decimal (0.1, 1e+100, -0), NaN, Infinity, -Infinity")
BOOLEAN = Kind("boolean", ("eq",), "true or false", min_width=4)
TEXT = Kind("text", TEXT_OPS, "the text itself; formula neutralisation applies", key=True, min_width=0)
UUID = Kind("uuid", ORDER_OPS, "lower-case hyphenated, 36 characters", key=True, min_width=36)
DATE = Kind("date", ORDER_OPS, "ISO 8601 (1969-07-20); infinity, -infinity; BC years end in ' BC'", True, 8)
TIME = Kind("time", RANGE_OPS, "ISO 8601 (13:05:00, 23:59:59.999999)", min_width=8)
TIMESTAMP = Kind("timestamp", RANGE_OPS, "ISO 8601 without offset (2024-01-31T13:05:00.25)", True, 19)
TIMESTAMPTZ = Kind("timestamptz", RANGE_OPS, "ISO 8601 in UTC (2024-01-31T13:05:00.25+00:00)", True, 22)
INTERVAL = Kind("interval", RANGE_OPS, "ISO 8601 duration (P1Y2M3DT4H5M6S, P-1D)", min_width=3)
JSON = Kind("json", (), "compact JSON (no whitespace outside strings)")
BYTEA = Kind("bytea", (), "hex: \\x followed by two hex digits per byte", min_width=2)
ENUM = Kind("enum", CHOICE_OPS, "the label; formula neutralisation applies", min_width=0)
ARRAY = Kind("array", (), "a JSON array (nested for more dimensions)", min_width=2)
INET = Kind("inet", CHOICE_OPS, "PostgreSQL's form (192.168.0.1, 10.0.0.0/8, ::1)", min_width=3)
MACADDR = Kind("macaddr", CHOICE_OPS, "lower-case colon-separated (08:00:2b:01:02:03)", min_width=17)
OTHER = Kind("other", (), "PostgreSQL's own text output")

_BY_BASE_TYPE: dict[str, Kind] = {
    **{name: INTEGER for name in _INTEGER_BITS},
    "numeric": NUMERIC,
    "float4": FLOAT,
    "float8": FLOAT,
    "bool": BOOLEAN,
    **{name: TEXT for name in ("text", "varchar", "bpchar", "name", "citext")},
    "uuid": UUID,
    "date": DATE,
    "time": TIME,
    "timestamp": TIMESTAMP,
    "timestamptz": TIMESTAMPTZ,
    "interval": INTERVAL,
    "json": JSON,
    "jsonb": JSON,
    "bytea": BYTEA,
    "inet": INET,
    "cidr": INET,
    "macaddr": MACADDR,
}
KEY_TYPES = ("int2", "int4", "int8", "uuid", "text", "varchar", "date", "timestamp", "timestamptz")


def kind_of(base_type: str, is_enum: bool = False, is_array: bool = False) -> Kind:
    """The kind of a base type (``pg_type.typname`` after domains are unwrapped)."""
    if is_array:
        return ARRAY
    if is_enum:
        return ENUM
    return _BY_BASE_TYPE.get(base_type, OTHER)


@dataclass(frozen=True)
class ColumnType:
    """A column's type as the catalog gives it, reduced to what exports need.

    Attributes:
        display: the declared type as PostgreSQL formats it (``character varying(80)``,
            ``shop.quantity`` for a domain).
        base: the base type's ``typname`` (``varchar``; the type under a domain).
        cast: the base type as SQL names it for a cast, schema-qualified and without a
            type modifier (``pg_catalog.varchar``), so a filter value is never truncated.
        kind: what Spillway does with it.
        labels: an enum's labels, in order (empty otherwise).
    """

    display: str
    base: str
    cast: str
    kind: Kind
    labels: tuple[str, ...] = ()

    @property
    def can_be_key(self) -> bool:
        """Whether a column of this type may be an export's key."""
        return self.base in KEY_TYPES


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueProblem(f"expected a string, got {show(value)}")
    if len(value) > MAX_TEXT_VALUE:
        raise ValueProblem(f"longer than {MAX_TEXT_VALUE} characters")
    if "\x00" in value:
        raise ValueProblem("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueProblem("not valid Unicode (a lone surrogate)") from None
    return value


def _integer(column: ColumnType, value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueProblem(f"expected an integer, got {show(value)}")
    limit = 2 ** (_INTEGER_BITS.get(column.base, 64) - 1)
    if not -limit <= value < limit:
        raise ValueProblem(f"{show(value)} is out of range for {column.display}")
    return str(value)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueProblem(f"expected a number, got {show(value)}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueProblem(f"expected a finite number, got {show(value)}")
        number = Decimal(str(value))
    else:
        raise ValueProblem(f"expected a number, got {show(value)}")
    if not number.is_finite():
        raise ValueProblem(f"expected a finite number, got {show(value)}")
    if number and not -MAX_NUMERIC_EXPONENT <= number.adjusted() <= MAX_NUMERIC_EXPONENT:
        raise ValueProblem(f"{show(value)} is out of range (|exponent| at most {MAX_NUMERIC_EXPONENT})")
    return number


def _float(value: Any, single: bool) -> str:
    if isinstance(value, str) and value.strip().lower() in _FLOAT_WORDS:
        return _FLOAT_WORDS[value.strip().lower()]
    number = _decimal(value)
    largest, smallest = _FLOAT4_RANGE if single else _FLOAT8_RANGE
    if abs(number) > largest or (number and abs(number) < smallest):
        what = "real" if single else "double precision"
        raise ValueProblem(f"{show(value)} is out of range for {what} ({smallest:.1e} to {largest:.1e} in magnitude)")
    return str(number)


def _timestamp(value: Any, with_zone: bool) -> str:
    if not isinstance(value, str):
        raise ValueProblem(f"expected an ISO 8601 timestamp string, got {show(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueProblem(f"{show(value)} is not an ISO 8601 timestamp") from None
    if not with_zone:
        if parsed.tzinfo is not None:
            raise ValueProblem(f"{show(value)}: this column has no time zone; give the timestamp without an offset")
        return parsed.isoformat()
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # documented: no offset means UTC
    try:
        return parsed.astimezone(UTC).isoformat()
    except OverflowError:
        raise ValueProblem(f"{show(value)} is out of range in UTC") from None


def _parsed(parse: Any, value: Any, what: str) -> Any:
    if not isinstance(value, str):
        raise ValueProblem(f"expected {what} string, got {show(value)}")
    try:
        return parse(value)
    except ValueError:
        raise ValueProblem(f"{show(value)} is not {what}") from None


def _interval(value: Any) -> str:
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ValueProblem(f"expected an ISO 8601 duration like 'P1DT2H' or 'PT30M', got {show(value)}")
    return value


def _macaddr(value: Any) -> str:
    if not isinstance(value, str) or not _MACADDR.fullmatch(value):
        raise ValueProblem(f"expected a MAC address like '08:00:2b:01:02:03', got {show(value)}")
    return value.lower().replace("-", ":")


def filter_value(column: ColumnType, op: str, value: Any) -> str:
    """Check one filter value against the column's type; return it as the text PostgreSQL
    reads back with ``::<cast>``.

    Raises:
        ValueProblem: the value does not fit (the message names why, not where).
    """
    kind = column.kind
    if kind is INTEGER:
        return _integer(column, value)
    if kind is NUMERIC:
        return str(_decimal(value))
    if kind is FLOAT:
        return _float(value, column.base == "float4")
    if kind is BOOLEAN:
        if not isinstance(value, bool):
            raise ValueProblem(f"expected true or false, got {show(value)}")
        return "true" if value else "false"
    if kind is TEXT:
        text = _text(value)
        if op == "contains" and text == "":
            raise ValueProblem("must not be empty")
        return text
    if kind is ENUM:
        if value not in column.labels:
            raise ValueProblem(f"{show(value)} is not one of {column.display}'s labels: {', '.join(column.labels)}")
        return str(value)
    if kind is UUID:
        return str(_parsed(uuid.UUID, value, "a UUID"))
    if kind is DATE:
        return str(_parsed(date.fromisoformat, value, "an ISO 8601 date").isoformat())
    if kind is TIME:
        parsed = _parsed(time.fromisoformat, value, "an ISO 8601 time")
        if parsed.tzinfo is not None:
            raise ValueProblem(f"{show(value)}: give the time without an offset")
        return str(parsed.isoformat())
    if kind is TIMESTAMP:
        return _timestamp(value, with_zone=False)
    if kind is TIMESTAMPTZ:
        return _timestamp(value, with_zone=True)
    if kind is INTERVAL:
        return _interval(value)
    if kind is INET:
        strict = column.base == "cidr"
        parse = (lambda v: ipaddress.ip_network(v, strict=True)) if strict else ipaddress.ip_interface
        return str(_parsed(parse, value, "a network address" if strict else "an IP address"))
    if kind is MACADDR:
        return _macaddr(value)
    raise ValueProblem(f"a {column.display} column cannot be filtered")
