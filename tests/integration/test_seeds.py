"""Seeding is deterministic and carries the hostile values on purpose."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from seeds.seed import apply_schema, seed_products, seed_uneven, table_checksum
from shared.migrate import ensure_database
from tests.support.settings import with_dbname


@pytest.fixture(scope="module")
def seed_db(settings, base_settings):
    """A database of its own, so reseeding never disturbs the export tests' data."""
    dbname = conninfo_to_dict(settings.state_database_url)["dbname"] + "_seeds"
    ensure_database(base_settings.state_database_url, dbname)
    url = with_dbname(settings.state_database_url, dbname)
    with psycopg.connect(url, autocommit=True) as conn:
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
