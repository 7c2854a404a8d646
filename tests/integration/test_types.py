"""Any table: every common column type renders as the README says, uuid and text keys export
every row once in key order, and row scopes bind to the calling key's attributes.

The data is ``shop.orders`` (seeds/orders.sql): 300,000 rows with every type's edge values
(NULL and '', extremes, NaN and infinities, BC and far-future dates, negative intervals, NUL
bytes, hostile text), keyed by a uuid (dataset ``orders``) and by a skewed text code
(``orders_by_code``); ``tenant_orders`` is the same rows scoped by the key's ``tenant``.
The expected files are computed by ``tests/support/rendering.py`` from the values psycopg
reads, not by Spillway's SQL.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from shared.settings import S3_MIN_PART_BYTES
from tests.support.api import ApiSession, parse_csv
from tests.support.rendering import csv_bytes, expected_rows
from tests.support.state import chunk_rows

TABLE = "shop.orders"
ALL = [  # every column of shop.orders but the excluded internal_notes, in table order
    "id", "code", "tenant_id", "status", "quantity", "small", "big", "amount", "ratio", "score", "paid",
    "customer", "country", "email", "placed_on", "placed_at", "paid_at", "pickup", "window_length", "details",
    "payload", "signature", "tags", "line_counts", "client_ip", "network", "device", "notes",
]  # fmt: skip
# Not read back by COPY FROM: arrays are JSON in the CSV (not array literals), and json is
# compacted (the same JSON, not the same text; its "\u0000" has no jsonb form to compare).
NOT_LOADABLE = {"tags", "line_counts", "payload"}
QUARTER = "40000000-0000-0000-0000-000000000000"
# About 1/32 of the uuid key space: few enough rows for the inline tier.
INLINE_SLICE = {"id": {"lt": "08000000-0000-0000-0000-000000000000"}}


def _first_difference(got: bytes, want: bytes) -> str:
    got_rows, want_rows = parse_csv(got), parse_csv(want)
    for n, (a, b) in enumerate(zip(got_rows, want_rows, strict=False)):
        if a != b:
            cells = [
                (ALL[i] if i < len(ALL) else i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y
            ]
            return f"row {n}: {cells[:3]}"
    return f"{len(got_rows)} rows, expected {len(want_rows)}"


def test_every_type_renders_as_documented(api, seeded, settings):
    """A quarter of the key space (75,000 rows; each edge value is in every 997 rows, so each
    is there about 75 times), every column, byte for byte against the README's rules."""
    done, data = api.run({"dataset": "orders", "filters": {"id": {"lt": QUARTER}}})
    want = csv_bytes(ALL, expected_rows(seeded, TABLE, "id", ALL, where=f"id < '{QUARTER}'"))
    assert data == want, _first_difference(data, want)
    parts = chunk_rows(settings, done["id"])
    assert len(parts) > 1 and all(p["bytes"] >= S3_MIN_PART_BYTES for p in parts[:-1])


def test_inline_and_async_are_byte_identical_for_every_type(api, seeded):
    body = {"dataset": "orders", "filters": INLINE_SLICE, "csv": {"bom": True}}
    inline = api.inline({**body, "delivery": "inline"})
    _, stored = api.run({**body, "delivery": "async"})
    assert inline == stored
    rows = parse_csv(inline.removeprefix("\ufeff".encode()))
    assert 1000 < len(rows) - 1 <= 10_000


def test_the_csv_loads_back_into_the_same_rows(api, seeded):
    """COPY ... FROM reads every non-array cell back to the value it came from."""
    columns = [c for c in ALL if c not in NOT_LOADABLE]
    _, data = api.run(
        {
            "dataset": "orders",
            "columns": columns,
            "filters": {"id": {"lt": QUARTER}},
            "csv": {"neutralize_formulas": False},
        }
    )
    listed = compared = sql.SQL(", ").join(map(sql.Identifier, columns))
    with psycopg.connect(seeded) as conn:
        conn.execute("CREATE TEMP TABLE loaded (LIKE shop.orders)")
        with conn.cursor().copy(sql.SQL("COPY loaded ({}) FROM STDIN (FORMAT csv, HEADER true)").format(listed)) as cp:
            cp.write(data)
        conn.execute(
            sql.SQL("CREATE TEMP VIEW source AS SELECT * FROM shop.orders WHERE id < {}").format(sql.Literal(QUARTER))
        )
        for left, right in (("source", "loaded"), ("loaded", "source")):
            query = sql.SQL("SELECT count(*) FROM (SELECT {c} FROM {a} EXCEPT ALL SELECT {c} FROM {b}) d").format(
                c=compared, a=sql.SQL(left), b=sql.SQL(right)
            )
            assert conn.execute(query).fetchone()[0] == 0, f"rows of {left} missing from {right}"
        assert conn.execute("SELECT count(*) FROM loaded").fetchone()[0] > 70_000


@pytest.mark.parametrize(("dataset", "key"), [("orders", "id"), ("orders_by_code", "code")])
def test_uuid_and_text_keyed_exports_are_every_row_once_in_key_order(api, seeded, settings, dataset, key):
    columns = ["code", "id", "tenant_id", "notes"]
    done, data = api.run({"dataset": dataset, "columns": columns})
    want = csv_bytes(columns, expected_rows(seeded, TABLE, key, columns))
    assert data == want, _first_difference(data, want)  # count, order (PostgreSQL's) and values
    parts = chunk_rows(settings, done["id"])
    assert len(parts) > 1 and all(p["bytes"] >= S3_MIN_PART_BYTES for p in parts[:-1])
    bounds = [p["key_hi"] for p in parts]
    with psycopg.connect(seeded) as conn:  # the planner's ranges ascend in the key's own order
        ordered = conn.execute(
            sql.SQL("SELECT array_agg(k ORDER BY k::{t}) FROM unnest(%s::text[]) k").format(
                t=sql.SQL("uuid" if key == "id" else "text")
            ),
            (bounds,),
        ).fetchone()[0]
    assert ordered == bounds


def test_filters_of_every_kind_select_what_the_sql_selects(api, seeded):
    filters = {
        "status": {"in": ["paid", "shipped"]},
        "score": {"gte": -1e300},
        "paid": {"eq": True},
        "placed_on": {"gte": "1950-01-01", "lt": "2100-01-01"},
        "paid_at": {"lt": "2030-01-01T00:00:00Z"},
        "window_length": {"gte": "PT0S"},
        "email": {"contains": "EXAMPLE"},
    }
    where = (
        "status IN ('paid', 'shipped') AND score >= -1e300 AND paid AND placed_on >= '1950-01-01'"
        " AND placed_on < '2100-01-01' AND paid_at < '2030-01-01T00:00:00Z' AND window_length >= '0'"
        " AND strpos(lower(email::text), 'example') > 0"
    )
    columns = ["id", "status", "score", "paid", "placed_on", "email"]
    _, data = api.run({"dataset": "orders", "columns": columns, "filters": filters, "delivery": "async"})
    want = csv_bytes(columns, expected_rows(seeded, TABLE, "id", columns, where=where))
    assert data == want, _first_difference(data, want)
    assert len(parse_csv(data)) > 100


@pytest.mark.parametrize(
    ("filters", "field", "words"),
    [
        ({"status": {"eq": "lost"}}, "filters.status.eq", "labels"),
        ({"id": {"eq": "not-a-uuid"}}, "filters.id.eq", "UUID"),
        ({"client_ip": {"eq": "300.1.1.1"}}, "filters.client_ip.eq", "IP address"),
        ({"network": {"eq": "10.0.0.1/8"}}, "filters.network.eq", "network"),
        ({"device": {"eq": "08:00:2b"}}, "filters.device.eq", "MAC address"),
        ({"window_length": {"gte": "1 day"}}, "filters.window_length.gte", "ISO 8601 duration"),
        ({"placed_at": {"gte": "2020-01-01T00:00:00+02:00"}}, "filters.placed_at.gte", "no time zone"),
        ({"small": {"eq": 40000}}, "filters.small.eq", "out of range"),
        ({"paid": {"eq": "yes"}}, "filters.paid.eq", "true or false"),
        ({"details": {"eq": "{}"}}, "filters.details", "cannot be filtered"),
        ({"signature": {"eq": "\\x00"}}, "filters.signature", "cannot be filtered"),
        ({"internal_notes": {"eq": "x"}}, "filters.internal_notes", "unknown filter column"),
    ],
)
def test_filter_values_are_checked_against_the_column_type(api, filters, field, words):
    response = api.post("/exports", json={"dataset": "orders", "filters": filters})
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["field"] == field and words in error["message"], error


def test_each_tenant_gets_exactly_its_rows(api, client, seeded, keys_for):
    """Inline and async, count and content; a filter narrows the scope, never widens it."""
    columns = ["id", "tenant_id", "code"]
    for tenant in ("2", "4"):
        mine = ApiSession(client, keys_for(f"tenant-{tenant}", attributes={"tenant": tenant}))
        want = csv_bytes(columns, expected_rows(seeded, TABLE, "id", columns, where=f"tenant_id = {tenant}"))
        _, stored = mine.run({"dataset": "tenant_orders", "columns": columns})
        assert stored == want, _first_difference(stored, want)
        small = {"dataset": "tenant_orders", "columns": columns, "filters": INLINE_SLICE}
        inline = mine.inline({**small, "delivery": "inline"})
        assert inline == mine.run({**small, "delivery": "async"})[1]
        assert {row[1] for row in parse_csv(inline)[1:]} == {tenant}
        other = "3" if tenant == "2" else "1"  # asking for another tenant's rows finds none
        widened = mine.inline({**small, "filters": {**INLINE_SLICE, "tenant_id": {"in": [int(other), int(tenant)]}}})
        assert {row[1] for row in parse_csv(widened)[1:]} == {tenant}
        nothing = mine.inline({**small, "filters": {**INLINE_SLICE, "tenant_id": {"eq": int(other)}}})
        assert parse_csv(nothing) == [columns]


@pytest.mark.parametrize(
    ("owner", "attributes", "admin", "words"),
    [
        ("no-tenant", {}, False, "attribute 'tenant'"),
        ("admin-no-tenant", {}, True, "attribute 'tenant'"),
        ("other-attribute", {"region": "eu"}, False, "attribute 'tenant'"),
        ("bad-tenant", {"tenant": "forty-two"}, False, "expected an integer"),
    ],
)
def test_a_key_without_the_scope_attribute_gets_403(client, keys_for, owner, attributes, admin, words):
    key = keys_for(owner, attributes=attributes, admin=admin)
    for delivery in ("inline", "async"):
        response = ApiSession(client, key).post("/exports", json={"dataset": "tenant_orders", "delivery": delivery})
        assert response.status_code == 403, response.get_data(as_text=True)
        assert words in response.get_json()["error"]["message"]
    assert (
        ApiSession(client, key).post("/exports", json={"dataset": "orders", "filters": INLINE_SLICE}).status_code == 200
    )
