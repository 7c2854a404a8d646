"""The README's CSV rules, written again in Python from the values psycopg reads: what a test
expects an export to hold, computed without Spillway's SQL.

Values that Python's types cannot hold (infinite and BC dates, ``24:00:00``, months in an
interval, an inet's own spelling) are read as PostgreSQL's text in the same session settings
as the export's, and the rule is applied to that text.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from shared.formulas import neutralize

# Session settings of an export's source connection (shared/db.py connect_source).
SOURCE_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c bytea_output=hex"
AS_TEXT = ("date", "time", "timestamp", "timestamptz", "interval", "inet", "cidr", "macaddr", "numeric")
TEXT_LIKE = ("text", "varchar", "bpchar", "citext", "name")


def csv_cell(text: str | None) -> str:
    """One field as PostgreSQL's CSV writes it: NULL empty, '' quoted, quotes doubled."""
    if text is None:
        return ""
    if text == "" or text == "\\." or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[str | None]]) -> bytes:
    """The whole file: the header and the rows, LF line ends."""
    lines = [",".join(csv_cell(h) for h in header)]
    lines.extend(",".join(csv_cell(c) for c in row) for row in rows)
    return ("\n".join(lines) + "\n").encode()


def _shortest_float(value: float, single: bool) -> str:
    """PostgreSQL's shortest-exact float output (float4out/float8out with extra_float_digits=1)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if struct.pack(">d", value)[0] & 0x80 else "0"
    if single:
        for digits in range(1, 10):
            text = f"{value:.{digits - 1}e}"
            if struct.unpack("f", struct.pack("f", float(text)))[0] == value:
                break
    else:
        text = repr(value)
    number = Decimal(text)
    sign, digit_tuple, exponent = number.as_tuple()
    digit_text = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    scientific = int(exponent) + len(digit_tuple) - 1
    if -4 <= scientific < (6 if single else 15):
        fixed = format(number, "f")
        fixed = fixed.rstrip("0").rstrip(".") if "." in fixed else fixed
        return fixed
    mantissa = digit_text[0] + ("." + digit_text[1:] if len(digit_text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if scientific < 0 else '+'}{abs(scientific):02d}"


def _stamp(text: str, with_zone: bool) -> str:
    """A date/time text of PostgreSQL's ISO style as the README's timestamp rule writes it."""
    if text in ("infinity", "-infinity"):
        return text
    bc = text.endswith(" BC")
    body = text.removesuffix(" BC").replace(" ", "T", 1)
    if with_zone:
        body += ":00"  # '+00' in UTC sessions -> '+00:00'
    return body + (" BC" if bc else "")


def _minify_json(text: str) -> str:
    """JSON without whitespace outside strings (a scanner, not a regular expression)."""
    out, in_string, escaped = [], False, False
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif char not in " \t\n\r":
            out.append(char)
    return "".join(out)


def render(base: str, value: Any, neutralize_formulas: bool = True, is_array: bool = False) -> str | None:
    """The README's rendering of one value of base type ``base`` (None: NULL)."""
    if value is None:
        return None
    if is_array:
        return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    if base in ("timestamp", "timestamptz"):
        return _stamp(value, base == "timestamptz")
    if base in ("json", "jsonb"):
        return _minify_json(value)
    if base in ("float4", "float8"):
        return _shortest_float(value, base == "float4")
    if base == "bool":
        return "true" if value else "false"
    if base == "bytea":
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and neutralize_formulas and (base in TEXT_LIKE or base == "enum"):
        return neutralize(value)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


Kind = tuple[str, bool]  # (base type name, or "enum"; whether an array)


def source_rows(
    url: str, table: str, key: str, columns: Sequence[str], where: str = "TRUE"
) -> tuple[list[Kind], list[tuple[Any, ...]]]:
    """The rows of ``table`` (schema-qualified) in key order as psycopg reads them (the types
    Python cannot hold as PostgreSQL's text), with each column's kind."""
    schema, name = table.split(".")
    with psycopg.connect(url, options=SOURCE_OPTIONS) as conn:
        for type_name in (*AS_TEXT, "json", "jsonb"):
            conn.adapters.register_loader(type_name, TextLoader)
        info = {
            attname: (base, is_enum, is_array)
            for attname, base, is_enum, is_array in conn.execute(
                "SELECT a.attname, coalesce(b.typname, t.typname), coalesce(b.typtype, t.typtype) = 'e',"
                " t.typcategory = 'A' FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                " LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'"
                " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0",
                (table,),
            )
        }
        selected = sql.SQL(", ").join(
            # a domain over an enum or citext has no loader of its own: read it as text
            sql.SQL("{}::text").format(sql.Identifier(c)) if info[c][1] else sql.Identifier(c)
            for c in columns
        )
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
            selected, sql.Identifier(schema, name), sql.SQL(where), sql.Identifier(key)
        )
        rows = conn.execute(query).fetchall()
    return [("enum" if info[c][1] else info[c][0], info[c][2]) for c in columns], rows


def expected_rows(
    url: str, table: str, key: str, columns: Sequence[str], where: str = "TRUE", neutralize_formulas: bool = True
) -> list[list[str | None]]:
    """The rows of ``table`` (schema-qualified) in key order, rendered by the README's rules."""
    kinds, rows = source_rows(url, table, key, columns, where)
    return [
        [render(base, v, neutralize_formulas, is_array) for (base, is_array), v in zip(kinds, row, strict=True)]
        for row in rows
    ]


NOT_A_NUMBER = ("NaN", "Infinity", "-Infinity")  # JSON and Excel have no such numbers: they are text


def json_value(base: str, value: Any, is_array: bool = False) -> Any:
    """The README's JSON Lines value of one value, as ``json.loads(..., parse_float=Decimal)`` reads it."""
    if value is None:
        return None
    if is_array or base in ("json", "jsonb"):
        return json.loads(
            value if base in ("json", "jsonb") and not is_array else render(base, value, False, is_array) or "",
            parse_float=Decimal,
        )
    if base in ("int2", "int4", "int8", "bool"):
        return value
    if base in ("numeric", "float4", "float8"):
        text = value if base == "numeric" else _shortest_float(value, base == "float4")
        return text if text in NOT_A_NUMBER else Decimal(text)
    return render(base, value, neutralize_formulas=False)
