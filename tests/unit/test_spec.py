"""Request validation against the registry (no database)."""

from __future__ import annotations

import pytest

from shared.spec import SpecError, parse_spec


def test_defaults_and_normalisation():
    spec = parse_spec(
        {"dataset": "products", "filters": {"created_at": {"gte": "2024-01-01"}, "price": {"lt": "10.50"}}}
    )
    assert spec.columns[0] == "id" and spec.delivery == "auto" and spec.filename == "products.csv"
    assert spec.neutralize_formulas is True and spec.bom is False
    assert spec.filters["created_at"]["gte"] == "2024-01-01T00:00:00+00:00"  # no offset means UTC
    assert spec.filters["price"]["lt"] == "10.50"
    assert parse_spec(spec.to_json()) == spec  # what is stored rebuilds the same spec


@pytest.mark.parametrize(
    "body, field",
    [
        ({"dataset": "products", "columns": ["id", "pg_sleep(10)"]}, "columns"),
        ({"dataset": "products", "filters": {"id": {"gte": True}}}, "filters.id.gte"),
        ({"dataset": "products", "filters": {"id": {"in": list(range(1001))}}}, "filters.id.in"),
        ({"dataset": "products", "filters": {"name": {"contains": ""}}}, "filters.name.contains"),
        ({"dataset": "products", "filters": {"name": {"eq": "a\x00b"}}}, "filters.name.eq"),
        ({"dataset": "products", "filters": {"price": {"gte": "NaN"}}}, "filters.price.gte"),
        ({"dataset": "products", "filters": {"quantity": {"eq": 2**31}}}, "filters.quantity.eq"),
        ({"dataset": "products", "csv": {"delimiter": ";"}}, "csv.delimiter"),
    ],
)
def test_bad_values_name_their_field(body, field):
    with pytest.raises(SpecError) as info:
        parse_spec(body)
    assert info.value.field == field


@pytest.mark.parametrize(
    "extra, filename, content_type",
    [
        ({"format": "csv", "compression": "gzip"}, "products.csv.gz", "application/gzip"),
        ({"format": "jsonl"}, "products.jsonl", "application/x-ndjson"),
        ({"format": "jsonl", "compression": "gzip"}, "products.jsonl.gz", "application/gzip"),
        ({"format": "xlsx"}, "products.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ],
)
def test_formats_name_their_file_and_type_and_round_trip(extra, filename, content_type):
    spec = parse_spec({"dataset": "products", **extra})
    assert spec.filename == filename and spec.output.content_type == content_type
    assert parse_spec(spec.to_json()) == spec
    assert spec.output.staged == (extra.get("compression") == "gzip" or extra["format"] == "xlsx")


def test_the_extension_is_added_when_missing():
    assert (
        parse_spec({"dataset": "products", "format": "jsonl", "filename": "report.csv"}).filename == "report.csv.jsonl"
    )
    assert parse_spec({"dataset": "products", "compression": "gzip", "filename": "r.CSV.GZ"}).filename == "r.CSV.GZ"
    assert parse_spec({"dataset": "products", "compression": "gzip", "filename": "r.csv"}).filename == "r.csv.gz"


def test_json_lines_are_never_neutralised_and_xlsx_is_by_default():
    assert parse_spec({"dataset": "products", "format": "jsonl"}).neutralize_formulas is False
    assert parse_spec({"dataset": "products", "format": "xlsx"}).neutralize_formulas is True
    off = parse_spec({"dataset": "products", "format": "xlsx", "xlsx": {"neutralize_formulas": False}})
    assert off.neutralize_formulas is False and off.to_json()["xlsx"] == {"neutralize_formulas": False}


def test_a_spec_stored_before_formats_is_csv():
    stored = parse_spec({"dataset": "products"}).to_json()
    del stored["compression"]
    assert parse_spec(stored).output.extension == ".csv"
