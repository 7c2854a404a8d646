"""The COPY reader straight from libpq (shared.db.CopyOut) against a real PostgreSQL: the same
bytes and row count as psycopg's own Copy, errors raised as psycopg raises them wherever
they happen (at the start, between rows, a backend killed), and a connection left usable
whenever a reader stops early or fails."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors, sql

from shared.db import CopyOut, connect_source, process_label

SERIES = sql.SQL(
    "COPY (SELECT g, repeat(%s, mod(g, 7)), g * 0.5, timestamptz '2024-01-31 13:05:00.25+00' - g * interval '1 minute'"
    " FROM generate_series(1, %s) g ORDER BY g) TO STDOUT (FORMAT csv)"
)
FAILS_AT_ROW = sql.SQL(
    "COPY (SELECT g, 100 / (%s - g) FROM generate_series(1, 100000) g ORDER BY g) TO STDOUT (FORMAT csv)"
)


def _psycopg_copy(conn: psycopg.Connection, query: sql.Composed, params: list) -> tuple[bytes, int]:
    with conn.cursor() as cur:
        with cur.copy(query, params) as copy:
            data = b"".join(bytes(row) for row in copy)
        return data, cur.rowcount


def _usable(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert conn.pgconn.transaction_status in (psycopg.pq.TransactionStatus.IDLE, psycopg.pq.TransactionStatus.INTRANS)


@pytest.mark.parametrize("rows", [0, 1, 5_000, 60_000])
@pytest.mark.parametrize("block_bytes", [1, 4096, 1 << 20])
def test_the_same_bytes_and_rows_as_psycopg_copy(settings, db, rows, block_bytes):
    params = ['é,"x"\n', rows]  # a value that needs quoting in SQL and in CSV
    with connect_source(settings, process_label("test")) as conn:
        conn.autocommit = True
        expected, expected_rows = _psycopg_copy(conn, SERIES, params)
        copy = CopyOut(conn, SERIES, params, block_bytes)
        blocks = list(copy)
        assert b"".join(blocks) == expected
        assert copy.rows == expected_rows == rows
        assert all(len(block) >= block_bytes for block in blocks[:-1])  # only the last block is short
        _usable(conn)


def test_an_error_at_the_start_is_psycopgs_and_the_connection_stays_usable(settings, db):
    with connect_source(settings, process_label("test")) as conn:
        conn.autocommit = True
        query = sql.SQL("COPY (SELECT no_such_column FROM generate_series(1, %s)) TO STDOUT")
        with pytest.raises(errors.UndefinedColumn):
            list(CopyOut(conn, query, [3], 1024))
        _usable(conn)
        with pytest.raises(psycopg.ProgrammingError, match="COPY"):
            list(CopyOut(conn, sql.SQL("SELECT %s"), [1], 1024))
        _usable(conn)


@pytest.mark.parametrize("fails_at", [1, 2, 30_000, 99_999])
def test_an_error_between_rows_is_raised_after_the_rows_before_it(settings, db, fails_at):
    with connect_source(settings, process_label("test")) as conn:
        conn.autocommit = True
        copy = CopyOut(conn, FAILS_AT_ROW, [fails_at], 1024)
        received = bytearray()
        with pytest.raises(errors.DivisionByZero):
            for block in copy:
                received += block
        assert copy.rows is None
        assert received.count(b"\n") <= fails_at - 1  # never a row at or past the failing one
        _usable(conn)


def test_a_statement_timeout_is_query_canceled(settings, db):
    with connect_source(settings, process_label("test")) as conn:
        conn.autocommit = True
        conn.execute("SET statement_timeout = 200")
        query = sql.SQL(
            "COPY (SELECT g, pg_sleep(CASE WHEN g = %s THEN 5 ELSE 0 END) FROM generate_series(1, 10) g) TO STDOUT"
        )
        with pytest.raises(errors.QueryCanceled):
            list(CopyOut(conn, query, [3], 1))
        _usable(conn)


@pytest.mark.parametrize("after_blocks", [0, 1, 3])
def test_a_reader_that_stops_early_leaves_the_connection_usable(settings, db, after_blocks):
    with connect_source(settings, process_label("test")) as conn:
        conn.autocommit = True
        reader = iter(CopyOut(conn, SERIES, ["x", 500_000], 4096))
        for _ in range(after_blocks):
            next(reader)
        reader.close()  # what a consumer's exception or break does to the generator
        _usable(conn)
        active = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() AND query LIKE 'COPY%%'"
        ).fetchone()
        assert active == (0,)


def test_a_killed_backend_is_an_operational_error(settings, db):
    with (
        connect_source(settings, process_label("test")) as conn,
        connect_source(settings, process_label("killer")) as killer,
    ):
        conn.autocommit = killer.autocommit = True
        pid = conn.info.backend_pid
        reader = iter(CopyOut(conn, SERIES, ["x", 2_000_000], 4096))
        next(reader)
        killer.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(psycopg.OperationalError):
            for _ in reader:
                pass


def test_inside_a_transaction_it_reads_the_transactions_own_rows(settings, db):
    with connect_source(settings, process_label("test")) as conn:
        conn.execute("CREATE TEMP TABLE spillway_copy_out (n int) ON COMMIT DROP")
        conn.execute("INSERT INTO spillway_copy_out SELECT generate_series(1, 3)")
        copy = CopyOut(conn, sql.SQL("COPY (SELECT n FROM spillway_copy_out ORDER BY n) TO STDOUT"), [], 1024)
        assert b"".join(copy) == b"1\n2\n3\n" and copy.rows == 3
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS  # still the same transaction
        conn.rollback()
