"""Filter values per column kind: accepted and normalised to what PostgreSQL reads back, or
refused with a reason; the kind of every common type."""

from __future__ import annotations

import pytest

from shared import pgtypes as t
from shared.pgtypes import ColumnType, ValueProblem, filter_value, kind_of


def column(base: str, labels: tuple[str, ...] = (), is_enum: bool = False, is_array: bool = False) -> ColumnType:
    return ColumnType(base, base, f"pg_catalog.{base}", kind_of(base, is_enum, is_array), labels)


@pytest.mark.parametrize(
    ("base", "kind"),
    [
        ("int2", t.INTEGER), ("int4", t.INTEGER), ("int8", t.INTEGER), ("numeric", t.NUMERIC),
        ("float4", t.FLOAT), ("float8", t.FLOAT), ("bool", t.BOOLEAN), ("text", t.TEXT), ("varchar", t.TEXT),
        ("bpchar", t.TEXT), ("citext", t.TEXT), ("uuid", t.UUID), ("date", t.DATE), ("time", t.TIME),
        ("timestamp", t.TIMESTAMP), ("timestamptz", t.TIMESTAMPTZ), ("interval", t.INTERVAL), ("json", t.JSON),
        ("jsonb", t.JSON), ("bytea", t.BYTEA), ("inet", t.INET), ("cidr", t.INET), ("macaddr", t.MACADDR),
        ("money", t.OTHER), ("tsvector", t.OTHER), ("int4range", t.OTHER),
    ],
)  # fmt: skip
def test_every_common_type_has_its_kind_and_the_rest_are_other(base, kind):
    assert kind_of(base) is kind
    assert kind_of(base, is_array=True) is t.ARRAY and kind_of(base, is_enum=True) is t.ENUM


@pytest.mark.parametrize(
    ("base", "value", "normal"),
    [
        ("int2", -32768, "-32768"),
        ("int8", 2**63 - 1, "9223372036854775807"),
        ("numeric", "1.50", "1.50"),
        ("numeric", 2.5, "2.5"),
        ("float8", "nan", "NaN"),
        ("float8", "-Infinity", "-Infinity"),
        ("float4", 1e-45, "1E-45"),
        ("bool", False, "false"),
        ("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ("date", "1901-12-13", "1901-12-13"),
        ("time", "23:59:59.999999", "23:59:59.999999"),
        ("timestamp", "2204-02-29T01:02:03", "2204-02-29T01:02:03"),
        ("timestamptz", "2024-01-31T13:05:00+02:00", "2024-01-31T11:05:00+00:00"),
        ("interval", "P-1DT-2H-3M-4S", "P-1DT-2H-3M-4S"),
        ("interval", "PT0.5S", "PT0.5S"),
        ("inet", "10.0.0.1", "10.0.0.1/32"),
        ("cidr", "10.0.0.0/8", "10.0.0.0/8"),
        ("macaddr", "08-00-2B-01-02-03", "08:00:2b:01:02:03"),
        ("text", "Zürich 東京", "Zürich 東京"),
    ],
)
def test_values_are_normalised_to_what_postgresql_reads_back(base, value, normal):
    assert filter_value(column(base), "eq", value) == normal


@pytest.mark.parametrize(
    ("base", "value", "words"),
    [
        ("int2", 32768, "out of range"),
        ("int4", 1.0, "expected an integer"),
        ("int8", True, "expected an integer"),
        ("numeric", "1e999999999", "out of range"),
        ("numeric", "NaN", "finite"),
        ("float8", "1e400", "out of range"),
        ("float8", "1e-400", "out of range"),
        ("float4", 1e39, "out of range for real"),
        ("float4", "1e-50", "out of range for real"),
        ("float8", [], "expected a number"),
        ("bool", "true", "true or false"),
        ("uuid", "a0eebc99", "not a UUID"),
        ("uuid", 7, "expected a UUID string"),
        ("date", "2023-02-30", "not an ISO 8601 date"),
        ("time", "25:00", "not an ISO 8601 time"),
        ("time", "10:00+02:00", "without an offset"),
        ("timestamp", "2024-01-01T00:00:00Z", "no time zone"),
        ("timestamptz", "9999-12-31T23:59:59-23:59", "out of range"),
        ("interval", "1 day", "ISO 8601 duration"),
        ("interval", "P", "ISO 8601 duration"),
        ("inet", "300.1.1.1", "not an IP address"),
        ("cidr", "10.0.0.1/8", "not a network"),
        ("macaddr", "08:00:2b:01:02", "MAC address"),
        ("text", "a\x00b", "NUL"),
        ("text", "\ud800", "surrogate"),
        ("text", "x" * 1001, "longer than"),
        ("json", "{}", "cannot be filtered"),
        ("bytea", "\\x00", "cannot be filtered"),
    ],
)
def test_values_that_do_not_fit_are_refused_with_the_reason(base, value, words):
    with pytest.raises(ValueProblem, match=words):
        filter_value(column(base), "eq", value)


def test_enum_values_must_be_labels_and_contains_needs_text():
    status = column("order_status", labels=("pending", "paid"), is_enum=True)
    assert filter_value(status, "in", "paid") == "paid"
    with pytest.raises(ValueProblem, match="labels: pending, paid"):
        filter_value(status, "eq", "lost")
    with pytest.raises(ValueProblem, match="must not be empty"):
        filter_value(column("text"), "contains", "")


def test_only_key_types_can_be_keys():
    assert all(column(b).can_be_key for b in ("int2", "int4", "int8", "uuid", "text", "varchar", "date"))
    assert all(column(b).can_be_key for b in ("timestamp", "timestamptz"))
    assert not any(column(b).can_be_key for b in ("numeric", "float8", "jsonb", "bool", "citext", "bpchar", "inet"))
