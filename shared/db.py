"""Database access: connections to the source data and to the export state.

Invariant: every connection opened here carries an ``application_name`` that says what it
is for — ``spillway:export:<id>:<step>`` for reads of an export's source data,
``spillway:state:<id>:<step>`` for its bookkeeping, ``spillway:api`` — the UTC time zone,
and, for source reads, the configured statement timeout; so an operator (or a cancel) can
find and stop any query of an export in ``pg_stat_activity``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
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


def copy_blocks(
    cur: psycopg.Cursor[Any], query: sql.Composed, params: Sequence[Any], block_bytes: int
) -> Iterator[bytearray]:
    """Run a ``COPY ... TO STDOUT`` and yield its output joined into blocks of ``block_bytes``.

    libpq hands COPY output over one row at a time; blocks keep the callers' per-write work
    (hashing, socket writes, checks) proportional to bytes, not rows. ``cur.rowcount`` holds the
    row count once the generator is exhausted.
    """
    block = bytearray()
    with cur.copy(query, params) as copy:
        for data in copy:
            block += data
            if len(block) >= block_bytes:
                yield block
                block = bytearray()
    if block:
        yield block


def cancel_export_queries(settings: Settings, export_id: object) -> int:
    """Cancel every running source query of an export; return how many were signalled."""
    with connect_source(settings, process_label("cancel")) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (export_label_pattern(export_id),),
        ).fetchone()
    return int(row[0]) if row else 0
