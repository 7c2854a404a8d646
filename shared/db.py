"""Database access: connections to the source data and to the export state.

Invariant: every connection opened here carries an ``application_name`` that says what it
is for — ``spillway:export:<id>:<step>`` for reads of an export's source data,
``spillway:state:<id>:<step>`` for its bookkeeping, ``spillway:api`` — the UTC time zone,
and, for source reads, the configured statement timeout; so an operator (or a cancel) can
find and stop any query of an export in ``pg_stat_activity``.
"""

from __future__ import annotations

import select
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.rows import dict_row

from shared.settings import Settings

LABEL_PREFIX = "spillway"
_LABEL_MAX = 63  # PostgreSQL truncates application_name to 63 bytes
STATE_IDLE_IN_TRANSACTION_MS = 2000  # well under the API's 5 s statement timeout, far over any transaction


def export_label(export_id: object, step: str) -> str:
    """``spillway:export:<id>:<step>``: a connection reading an export's source data."""
    return f"{LABEL_PREFIX}:export:{export_id}:{step}"


def export_label_pattern(export_id: object) -> str:
    """A ``LIKE`` pattern matching every :func:`export_label` of one export."""
    return export_label(export_id, "%")


def state_label(step: str, export_id: object | None = None) -> str:
    """``spillway:state:<id>:<step>`` (or ``spillway:state:<step>``): export bookkeeping."""
    return f"{LABEL_PREFIX}:state:{export_id}:{step}" if export_id is not None else f"{LABEL_PREFIX}:state:{step}"


def process_label(role: str) -> str:
    """``spillway:<role>`` for connections of a process rather than of an export (api, cli, health)."""
    return f"{LABEL_PREFIX}:{role}"


def connect_state(settings: Settings, purpose: str) -> psycopg.Connection[dict[str, Any]]:
    """Open an autocommit connection to the export-state database (rows as dicts).

    Autocommit: each statement, or ``with conn.transaction()`` block, is committed when it
    ends, so nothing is enqueued on Redis before the state it relies on is visible.
    """
    return psycopg.connect(
        settings.state_database_url,
        application_name=purpose[:_LABEL_MAX],
        # A paused (SIGSTOPped, swapped-out) process must not hold rows that a cancel waits for:
        # its open transaction is ended after this. No state transaction waits on anything else.
        # Only after a Sync, though: so no state write is a pipeline (executemany), whose
        # statements hold their locks until its Sync (tests/state/conftest.py refuses them).
        options=f"-c TimeZone=UTC -c idle_in_transaction_session_timeout={STATE_IDLE_IN_TRANSACTION_MS}",
        row_factory=dict_row,
        connect_timeout=5,
        autocommit=True,
    )


def connect_source(settings: Settings, purpose: str) -> psycopg.Connection[tuple[Any, ...]]:
    """Open a connection to the source data with the statement timeout applied."""
    return psycopg.connect(
        settings.source_database_url,
        application_name=purpose[:_LABEL_MAX],
        # Every rendering choice that depends on a session setting, fixed (see shared/query.py).
        # jit=off: export queries are cheap per row but "expensive" to the planner, which then
        # compiled them for 150-300 ms each (measured on the planner's bucket query: 0.92 s with
        # JIT, 0.6 s without) - more than the compiled code ever saves on a range scan.
        options=(
            "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c bytea_output=hex"
            f" -c extra_float_digits=1 -c jit=off -c statement_timeout={settings.statement_timeout_ms}"
        ),
        connect_timeout=5,
    )


class CopyOut:
    """A ``COPY ... TO STDOUT``, its output joined into blocks of at least ``block_bytes``.

    libpq hands COPY output over one row per call. psycopg's ``Copy`` makes each call through
    its generator and wait machinery, which cost the workers more CPU than anything else they
    do: 1.05-1.24 s per 1,000,000 rows of 196 bytes. Here the rows buffered in libpq are taken
    in one tight loop and the socket is waited on only when the buffer is empty: 0.60 s.
    Blocks keep the callers' per-write work (hashing, socket writes, checks) proportional to
    bytes, not rows.

    The statement is sent as text, its values quoted by psycopg (``ClientCursor.mogrify``),
    and runs in whatever transaction the connection has open (one statement, its own
    snapshot, when none is). ``rows`` is the row count once every block was read. A reader
    that stops early (an exception, a cancel between blocks) cancels the statement and
    reads what is left, so the connection can be used or closed normally afterwards.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], query: sql.Composed, params: Sequence[Any], block_bytes: int
    ) -> None:
        self.conn, self.block_bytes = conn, block_bytes
        self.statement = psycopg.ClientCursor(conn).mogrify(query, params).encode(conn.info.encoding)
        self.rows: int | None = None

    def __iter__(self) -> Iterator[bytearray]:
        pgconn = self.conn.pgconn
        pgconn.send_query(self.statement)
        self._flush()
        first = self._result()
        if first.status != pq.ExecStatus.COPY_OUT:
            self._results()
            if first.status == pq.ExecStatus.FATAL_ERROR:
                raise self._error(first)
            raise psycopg.ProgrammingError(f"expected COPY TO STDOUT, got {pq.ExecStatus(first.status).name}")
        done = False
        try:
            get = pgconn.get_copy_data
            block = bytearray()
            while True:
                size, data = get(1)
                if size > 0:
                    block += data
                    if len(block) >= self.block_bytes:
                        yield block
                        block = bytearray()
                elif size == 0:  # nothing whole buffered: wait for the server
                    self._wait_readable()
                    pgconn.consume_input()
                elif size == -1:
                    break
                else:
                    raise psycopg.OperationalError(pgconn.get_error_message(self.conn.info.encoding))
            done = True
            final = self._results()
            if not final or final[0].status != pq.ExecStatus.COMMAND_OK:
                raise self._error(final[0]) if final else psycopg.OperationalError("COPY ended without a result")
            self.rows = final[0].command_tuples
            if block:
                yield block
        finally:
            if not done and pgconn.status != pq.ConnStatus.BAD:
                self._abandon()

    def _abandon(self) -> None:
        """Stop the statement of a reader that stopped early and read up to its end."""
        pgconn = self.conn.pgconn
        self.conn.cancel_safe(timeout=5)
        while (size := pgconn.get_copy_data(1)[0]) != -1:
            if size == -2:
                return
            if size == 0:
                self._wait_readable()
                pgconn.consume_input()
        self._results()

    def _flush(self) -> None:
        pgconn = self.conn.pgconn
        while pgconn.flush() != 0:
            select.select([pgconn.socket], [pgconn.socket], [])
            pgconn.consume_input()

    def _wait_readable(self) -> None:
        select.select([self.conn.pgconn.socket], [], [])

    def _next_result(self) -> pq.abc.PGresult | None:
        """The statement's next result once it has arrived; None after the last."""
        pgconn = self.conn.pgconn
        pgconn.consume_input()
        while pgconn.is_busy():
            self._wait_readable()
            pgconn.consume_input()
        return pgconn.get_result()

    def _result(self) -> pq.abc.PGresult:
        result = self._next_result()
        if result is None:
            raise psycopg.OperationalError(self.conn.pgconn.get_error_message(self.conn.info.encoding))
        return result

    def _results(self) -> list[pq.abc.PGresult]:
        """The statement's remaining results, up to libpq's end of them."""
        results: list[pq.abc.PGresult] = []
        while (result := self._next_result()) is not None:
            results.append(result)
        return results

    def _error(self, result: pq.abc.PGresult) -> psycopg.Error:
        return psycopg.errors.error_from_result(result, encoding=self.conn.info.encoding)


def cancel_export_queries(settings: Settings, export_id: object) -> int:
    """Cancel every running source query of an export; return how many were signalled."""
    with connect_source(settings, process_label("cancel")) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (export_label_pattern(export_id),),
        ).fetchone()
    return int(row[0]) if row else 0
