"""Create the demo dataset's schema and fill it, fast and deterministically.

Invariant: a table seeded with the same ``--rows`` and ``--seed`` always has the same
content (the same :func:`table_checksum`) on every run against the same PostgreSQL major
version; a different seed gives different content. Every value is computed
inside PostgreSQL from the row's id and the seed (see ``products.sql``,
``uneven_rows.sql`` and ``orders.sql``), with one ``INSERT ... SELECT ... FROM
generate_series``; nothing depends on ``random()``, the clock or the session's time zone.

The tables are named as on the command line: ``products``, ``uneven_rows`` and ``orders``
(which lives in its own schema, ``shop.orders``; the helpers accept either name).

Usage::

    python -m seeds.seed [--rows N] [--seed S] [--database-url URL]
                         [--table products|uneven_rows|orders|all] [--uneven-rows N]
                         [--orders-rows N] [--if-empty] [--checksum-only]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from shared.settings import load_settings

SQL_DIR = Path(__file__).resolve().parent
DEFAULT_PRODUCTS_ROWS = 1_000_000  # Large enough that exports need many chunks and parts.
DEFAULT_UNEVEN_ROWS = 20_000  # About 45 MB of bodies (48 MB of CSV): several parts, quick to load.
DEFAULT_ORDERS_ROWS = 300_000  # About 163 MB of CSV (some 20 parts of 8 MiB); seeds in about 12 s.
DEFAULT_SEED = 42  # Any fixed value; tests and docs quote checksums for this one.
TABLES = ("products", "uneven_rows", "orders")
# Where each table lives; SQL always names it through these parts, never by string pasting.
QUALIFIED: dict[str, tuple[str, ...]] = {
    "products": ("products",),
    "uneven_rows": ("uneven_rows",),
    "orders": ("shop", "orders"),
}
QUIET: dict[str, str] = {"client_min_messages": "warning"}  # Hide "already exists, skipping" notices.
LOAD_SETTINGS: dict[str, str] = {
    **QUIET,
    "synchronous_commit": "off",  # Losing the seed on a crash is harmless: re-run it.
    "maintenance_work_mem": "256MB",  # Index builds sort in memory.
}
# The text form of timestamps, intervals, floats and bytea depends on these; the checksum pins them.
CHECKSUM_SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}
SeedFn = Callable[["psycopg.Connection", int, int], "dict[str, float | int | str]"]
# "CREATE [UNIQUE] INDEX IF NOT EXISTS name ON [schema.]table": the index lives in the table's schema.
_INDEX_RE = re.compile(r"CREATE (?:UNIQUE )?INDEX IF NOT EXISTS (\w+) ON ((?:\w+\.)?\w+)", re.IGNORECASE)


def read_sql(name: str) -> str:
    """Return the text of ``seeds/<name>``."""
    return (SQL_DIR / name).read_text(encoding="utf-8")


def index_definitions(table: str) -> list[tuple[str, str]]:
    """Return ``(index name, CREATE INDEX statement)`` pairs of ``indexes.sql`` for ``table``.

    ``table`` is a name of :data:`TABLES` or its qualified form (``orders`` or ``shop.orders``);
    the index name is unqualified, as it lives in the table's schema.
    """
    qualified = ".".join(_table_parts(table))
    found = []
    for line in read_sql("indexes.sql").splitlines():
        match = _INDEX_RE.match(line.strip())
        if match and match.group(2) == qualified:
            found.append((match.group(1), line.strip()))
    return found


def apply_schema(conn: psycopg.Connection) -> None:
    """Create the demo tables and their indexes where missing (idempotent).

    Args:
        conn: an open connection; the DDL runs in its own transaction (or savepoint).
    """
    with conn.transaction(), _local_settings(conn, QUIET):
        conn.execute(read_sql("schema.sql"))
        conn.execute(read_sql("indexes.sql"))


def table_checksum(conn: psycopg.Connection, table: str) -> str:
    """Return an md5 hex digest of the whole content of ``table`` in id order.

    The rows' text form is taken with ``TimeZone`` UTC and ``DateStyle`` ISO, set for the
    query only, so the digest does not depend on the caller's session settings.

    Args:
        conn: an open connection.
        table: ``products``, ``uneven_rows`` or ``orders`` (also as ``shop.orders``).
    """
    query = sql.SQL("SELECT coalesce(md5(string_agg(md5(t::text), '' ORDER BY t.id)), md5('')) FROM {} AS t").format(
        sql.Identifier(*_table_parts(table))
    )
    with conn.transaction(), _local_settings(conn, CHECKSUM_SETTINGS):
        return str(_scalar(conn, query))


def table_is_empty(conn: psycopg.Connection, table: str) -> bool:
    """Return whether ``table`` (a name of :data:`TABLES`, or ``shop.orders``) has no rows."""
    query = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(*_table_parts(table)))
    return bool(_scalar(conn, query))


def seed_products(conn: psycopg.Connection, rows: int, seed: int) -> dict[str, float | int | str]:
    """Replace the content of ``products`` with ``rows`` deterministic rows.

    Args:
        conn: an open connection; everything runs in one transaction (or savepoint).
        rows: how many rows; ids are ``1..rows``.
        seed: selects the dataset; the same seed gives the same content.

    Returns:
        ``table``, ``rows`` and the timings in seconds: ``seconds`` (total), ``load``,
        ``indexes`` and ``analyze``.
    """
    return _seed_table(conn, "products", "products.sql", rows, seed)


def seed_uneven(conn: psycopg.Connection, rows: int, seed: int) -> dict[str, float | int | str]:
    """Replace the content of ``uneven_rows`` with ``rows`` deterministic rows.

    Row widths vary from a few bytes to 300 KB by id region (see ``uneven_rows.sql``).
    Arguments and result are those of :func:`seed_products`.
    """
    return _seed_table(conn, "uneven_rows", "uneven_rows.sql", rows, seed)


def seed_orders(conn: psycopg.Connection, rows: int, seed: int) -> dict[str, float | int | str]:
    """Replace the content of ``shop.orders`` with ``rows`` deterministic rows.

    Row ``n`` (``1..rows``) has a uuid key spread over the key space, a unique ``code``
    (70 percent share the prefix ``ORD-``) and a tenant of 1..5 (tenant 1 holds half the
    rows). Every column's edge values (NULL, '', extremes, NaN, infinities, hostile text,
    odd JSON and arrays) sit at the rows where ``mod(n, 997)`` is small; see ``orders.sql``.
    Arguments and result are those of :func:`seed_products`.
    """
    return _seed_table(conn, "orders", "orders.sql", rows, seed)


def _seed_table(
    conn: psycopg.Connection, table: str, script: str, rows: int, seed: int
) -> dict[str, float | int | str]:
    if rows < 0:
        raise ValueError(f"rows must be zero or more, got {rows}")
    parts = _table_parts(table)
    ident = sql.Identifier(*parts)
    indexes = index_definitions(table)
    started = time.perf_counter()
    apply_schema(conn)
    with conn.transaction(), _local_settings(conn, LOAD_SETTINGS):
        for name, _ in indexes:  # Building indexes after the load is several times faster.
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(*parts[:-1], name)))
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(ident))
        conn.execute(read_sql(script), {"rows": rows, "seed": seed})
        # An identity key must go on above the seeded ids; a uuid key has no sequence (nor max()).
        sequence = _scalar(conn, "SELECT pg_get_serial_sequence(%s, 'id')", (".".join(parts),))
        if sequence is not None:
            conn.execute(
                sql.SQL("SELECT setval(%s::regclass, coalesce(max(id), 0) + 1, false) FROM {}").format(ident),
                (sequence,),
            )
        loaded = time.perf_counter()
        for _, statement in indexes:
            conn.execute(statement)
        indexed = time.perf_counter()
        conn.execute(sql.SQL("ANALYZE {}").format(ident))
    finished = time.perf_counter()
    return {
        "table": table,
        "rows": rows,
        "seconds": finished - started,
        "load": loaded - started,
        "indexes": indexed - loaded,
        "analyze": finished - indexed,
    }


@contextmanager
def _local_settings(conn: psycopg.Connection, settings: Mapping[str, str]) -> Iterator[None]:
    """Change ``settings`` inside the current transaction and put the old values back.

    On an error the enclosing transaction or savepoint rolls back, which undoes them too.
    """
    previous = {}
    for name, value in settings.items():
        previous[name] = str(_scalar(conn, "SELECT current_setting(%s)", (name,)))
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    yield
    for name, value in previous.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


def _scalar(conn: psycopg.Connection, query: str | sql.Composed, params: Sequence[object] = ()) -> object:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError("query returned no row")
    return row[0]


def _table_parts(table: str) -> tuple[str, ...]:
    """Return the schema-qualified name parts of ``table``: a name of :data:`TABLES` or its dotted form."""
    for name, parts in QUALIFIED.items():
        if table in (name, ".".join(parts)):
            return parts
    raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")


def _row_count(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m seeds.seed", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=_row_count,
        default=None,
        help=f"rows of the chosen table (products: {DEFAULT_PRODUCTS_ROWS}, "
        f"uneven_rows: {DEFAULT_UNEVEN_ROWS}, orders: {DEFAULT_ORDERS_ROWS}); with --table all, of products",
    )
    parser.add_argument(
        "--uneven-rows",
        type=_row_count,
        default=None,
        help=f"rows of uneven_rows (default {DEFAULT_UNEVEN_ROWS}); overrides --rows for it",
    )
    parser.add_argument(
        "--orders-rows",
        type=_row_count,
        default=None,
        help=f"rows of orders, that is shop.orders (default {DEFAULT_ORDERS_ROWS}); overrides --rows for it",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"dataset seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL URL (default: SPILLWAY_SOURCE_DATABASE_URL or its default)"
    )
    parser.add_argument(
        "--table",
        choices=(*TABLES, "all"),
        default="products",
        help="what to seed: products, uneven_rows, orders (shop.orders) or all three",
    )
    parser.add_argument("--if-empty", action="store_true", help="leave a table alone if it already has rows")
    parser.add_argument("--checksum-only", action="store_true", help="print checksums, change nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Seed (or checksum) the chosen tables and print timings and checksums."""
    args = parse_args(argv)
    url = args.database_url or load_settings().source_database_url
    tables = list(TABLES) if args.table == "all" else [args.table]
    plan = {
        "products": (seed_products, args.rows if args.rows is not None else DEFAULT_PRODUCTS_ROWS),
        "uneven_rows": (seed_uneven, _rows_of("uneven_rows", args.uneven_rows, args, DEFAULT_UNEVEN_ROWS)),
        "orders": (seed_orders, _rows_of("orders", args.orders_rows, args, DEFAULT_ORDERS_ROWS)),
    }
    try:
        _run(url, tables, plan, args)
    except psycopg.Error as exc:
        print(f"seeding failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _rows_of(table: str, own: int | None, args: argparse.Namespace, default: int) -> int:
    """The table's own option, else ``--rows`` when it is the one table chosen, else its default."""
    if own is not None:
        return own
    return args.rows if args.table == table and args.rows is not None else default


def _run(url: str, tables: list[str], plan: Mapping[str, tuple[SeedFn, int]], args: argparse.Namespace) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        if not args.checksum_only:
            apply_schema(conn)
        for table in tables:
            if not args.checksum_only:
                seed_fn, rows = plan[table]
                if args.if_empty and not table_is_empty(conn, table):
                    print(f"skipped {table}: it already has rows (--if-empty)", flush=True)
                    continue
                result = seed_fn(conn, rows, args.seed)
                print(
                    f"seeded {table}: {rows} rows in {result['seconds']:.1f} s "
                    f"(load {result['load']:.1f} s, indexes {result['indexes']:.1f} s, "
                    f"analyze {result['analyze']:.1f} s)",
                    flush=True,
                )
            print(f"checksum {table}: {table_checksum(conn, table)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
