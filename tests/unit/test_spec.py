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
