"""Seeding is deterministic and carries the hostile values on purpose."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from seeds.seed import (
    TABLES,
    apply_schema,
    index_definitions,
    main,
    seed_orders,
    seed_products,
    seed_uneven,
    table_checksum,
    table_is_empty,
)
from shared.migrate import ensure_database
from tests.support.settings import with_dbname


@pytest.fixture(scope="module")
def seed_url(settings, base_settings):
    """The URL of a database of its own, so reseeding never disturbs the export tests' data."""
    dbname = conninfo_to_dict(settings.state_database_url)["dbname"] + "_seeds"
    ensure_database(base_settings.state_database_url, dbname)
    return with_dbname(settings.state_database_url, dbname)


@pytest.fixture(scope="module")
def seed_db(seed_url):
    """A connection to the seed tests' database, its schema applied (twice: idempotent)."""
    with psycopg.connect(seed_url, autocommit=True) as conn:
        apply_schema(conn)
        apply_schema(conn)  # idempotent
        yield conn


def test_same_seed_same_checksum_other_seed_other(seed_db):
    seed_products(seed_db, 20_000, 42)
    first = table_checksum(seed_db, "products")
    seed_products(seed_db, 20_000, 42)
    assert table_checksum(seed_db, "products") == first
    seed_products(seed_db, 20_000, 43)
    assert table_checksum(seed_db, "products") != first
    seed_uneven(seed_db, 2_000, 42)
    uneven = table_checksum(seed_db, "uneven_rows")
    seed_uneven(seed_db, 2_000, 42)
    assert table_checksum(seed_db, "uneven_rows") == uneven


def test_hostile_values_are_there(seed_db):
    seed_products(seed_db, 5_000, 42)
    count = lambda where: seed_db.execute(f"SELECT count(*) FROM products WHERE {where}").fetchone()[0]  # noqa: E731
    for where in (
        "name LIKE '%,%'",
        "name LIKE '%\"%'",
        "name LIKE E'%\\n%'",
        "name LIKE E'%\\r\\n%'",
        "name LIKE '=%'",
        "name LIKE '+%'",
        "name LIKE '-%'",
        "name LIKE '@%'",
        "name LIKE E'\\t%'",
        "name ~ '[^\\x01-\\x7f]'",
        "description = ''",
        "description IS NULL",
        "price IS NULL",
        "tags IS NULL",
        "updated_at IS NULL",
    ):
        assert count(where) > 0, where
    assert seed_db.execute("SELECT count(DISTINCT category) FROM products").fetchone()[0] == 10
    assert {r[0] for r in seed_db.execute("SELECT DISTINCT status FROM products")} == {"active", "inactive", "archived"}
    next_id = seed_db.execute(
        "INSERT INTO products (sku, name, category, status, tenant_id, created_at)"
        " VALUES ('x', 'x', 'books', 'active', 1, now()) RETURNING id"
    ).fetchone()[0]
    assert next_id == 5_001  # later inserts get higher keys: the high-water mark holds


def test_orders_same_seed_same_checksum_other_seed_other(seed_db):
    seed_orders(seed_db, 20_000, 42)
    first = table_checksum(seed_db, "orders")
    assert table_checksum(seed_db, "shop.orders") == first  # the qualified name works too
    seed_db.execute("SET TimeZone = 'Asia/Kathmandu'")  # the session's settings change nothing
    seed_db.execute("SET IntervalStyle = 'iso_8601'")
    try:
        seed_orders(seed_db, 20_000, 42)
        assert table_checksum(seed_db, "orders") == first
    finally:
        seed_db.execute("RESET TimeZone")
        seed_db.execute("RESET IntervalStyle")
    seed_orders(seed_db, 20_000, 43)
    assert table_checksum(seed_db, "orders") != first


def test_orders_indexes_are_rebuilt_after_the_load(seed_db):
    assert [name for name, _ in index_definitions("orders")] == ["orders_code_key", "orders_tenant_id_idx"]
    assert index_definitions("shop.orders") == index_definitions("orders")
    assert len(index_definitions("products")) == 5  # unqualified tables still match
    seed_orders(seed_db, 2_000, 42)
    indexes = dict(seed_db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'shop'").fetchall())
    assert set(indexes) == {"orders_pkey", "orders_code_key", "orders_tenant_id_idx"}
    assert indexes["orders_code_key"].startswith("CREATE UNIQUE INDEX")


def test_orders_edge_values_are_there(seed_db):
    seed_orders(seed_db, 5_000, 42)  # edges sit at mod(n, 997) = 1..27: each is there five times
    count = lambda where: seed_db.execute(f"SELECT count(*) FROM shop.orders WHERE {where}").fetchone()[0]  # noqa: E731
    for where in (
        "score = 'NaN'",
        "score = 'Infinity'",
        "score = '-Infinity'",
        "score = 1.7976931348623157e308",
        "ratio = 'NaN'",
        "ratio > 0 AND ratio < 1e-44",  # a subnormal
        "position('\\x00'::bytea IN signature) > 0",
        "signature = ''::bytea",
        "placed_on < '1970-01-01' AND isfinite(placed_on)",
        "placed_on > '2100-01-01' AND isfinite(placed_on)",
        "placed_on = 'infinity'",
        "placed_at = '-infinity'",
        "paid_at = 'infinity'",
        "placed_at = date_trunc('second', placed_at) AND isfinite(placed_at)",
        "placed_at <> date_trunc('second', placed_at)",
        "pickup = '24:00:00'",
        "window_length < interval '0'",
        "window_length = interval '1 year -2 mons 3 days'",
        "notes IS NULL",
        "notes = ''",
        "customer = ''",
        "email = ''",
        "notes LIKE E'%\\r\\n%'",
        "notes LIKE '=%'",
        "notes LIKE '   =%'",
        "notes LIKE '＝%'",
        "customer LIKE '@%'",
        "notes ~ '[\\u0590-\\u06ff]'",  # right-to-left script
        "small = -32768",
        "big = 9223372036854775807",
        "amount = -999999999999.99",
        "paid IS NULL",
        "array_ndims(line_counts) = 2",
        "array_position(tags, NULL) IS NOT NULL",
        "tags = '{}'",
        "details = 'null'::jsonb",
        'payload::text = \'{"a": 1, "a": 2}\'',  # json keeps duplicate keys
        "family(client_ip) = 6",
        "country = 'X'",
        "status = '=HYPERLINK(\"x\")'",
    ):
        assert count(where) > 0, where
    codes_by_case = seed_db.execute(
        "SELECT count(*) FROM shop.orders a JOIN shop.orders b ON lower(a.code) = lower(b.code) AND a.code < b.code"
    ).fetchone()[0]
    assert codes_by_case > 0  # 'ABC-n' and 'abc-n' are distinct keys
    assert count("internal_notes IS NULL OR internal_notes = ''") == 0
    # Row n = 1 is NULL in every nullable column: only the key, code, scope and internal notes remain.
    filled = seed_db.execute(
        "SELECT array_agg(j.key ORDER BY j.key) FROM shop.orders AS o, json_each(row_to_json(o)) AS j"
        " WHERE o.id = md5('42-1')::uuid AND j.value::text <> 'null'"
    ).fetchone()[0]
    assert filled == ["code", "id", "internal_notes", "tenant_id"]


def test_orders_keys_are_unique_skewed_and_spread(seed_db):
    seed_orders(seed_db, 20_000, 42)
    total, distinct, ord_prefix = seed_db.execute(
        "SELECT count(*), count(DISTINCT code), count(*) FILTER (WHERE starts_with(code, 'ORD-')) FROM shop.orders"
    ).fetchone()
    assert total == distinct == 20_000
    assert 0.65 < ord_prefix / total < 0.75
    tenants = dict(seed_db.execute("SELECT tenant_id, count(*) FROM shop.orders GROUP BY tenant_id").fetchall())
    assert set(tenants) == {1, 2, 3, 4, 5}
    assert all(tenants[1] > tenants[t] for t in (2, 3, 4, 5))
    # Codes end in '-n'; taken in n order, the uuid keys go up about half the time: not ordered like n.
    rising = seed_db.execute(
        "SELECT avg(up::int) FROM (SELECT id < lead(id) OVER (ORDER BY n, id) AS up FROM ("
        " SELECT id, (regexp_match(code, '-([0-9]+)$'))[1]::bigint AS n FROM shop.orders) AS o) AS s"
    ).fetchone()[0]
    assert 0.4 < rising < 0.6


def test_orders_command_line(seed_url, seed_db, capsys):
    assert "orders" in TABLES  # so --table all, which `make up` runs with --if-empty, seeds it
    assert main(["--table", "orders", "--orders-rows", "1_000", "--database-url", seed_url]) == 0
    assert seed_db.execute("SELECT count(*) FROM shop.orders").fetchone()[0] == 1_000
    assert main(["--table", "orders", "--rows", "2000", "--if-empty", "--database-url", seed_url]) == 0
    assert seed_db.execute("SELECT count(*) FROM shop.orders").fetchone()[0] == 1_000
    assert "skipped orders" in capsys.readouterr().out
    assert not table_is_empty(seed_db, "shop.orders")
