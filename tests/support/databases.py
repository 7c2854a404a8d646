"""Creating the databases tests and the benchmark run on: migrated, emptied, seeded once.

Invariant: a prepared database holds the current state schema with no exports, chunks or
keys, and the source tables' schema; seeding happens only when a table's row count differs
from the one asked for, so a second run starts quickly.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from shared.migrate import ensure_database, migrate

SEED = 42  # the seed of every dataset the tests and the benchmark read


def prepare_database(admin_url: str, dbname: str) -> str:
    """Create (if needed) and migrate ``dbname``, empty its state tables; return its URL.

    Args:
        admin_url: a database URL on the same server, used to create ``dbname``.
        dbname: the database to prepare.
    """
    from seeds.seed import apply_schema

    url = ensure_database(admin_url, dbname)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        # A run starts with no exports: Redis is flushed too, so old ones would be orphans.
        conn.execute("TRUNCATE exports, export_chunks, api_keys, webhook_deliveries")
        apply_schema(conn)
    return url


def needs_seeding(conn: psycopg.Connection, table: str, rows: int) -> bool:
    """Whether ``table`` (``name`` or ``schema.name``) holds another number of rows than ``rows``."""
    count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))).fetchone()[0]
    return count != rows
