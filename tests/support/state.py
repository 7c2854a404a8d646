"""What PostgreSQL says about an export while tests check it: its chunk rows, and the
queries its workers run (``pg_stat_activity``, ``pg_stat_progress_copy``).

Invariant: a connection reading an export's source data is named by
:func:`shared.db.export_label` (``…:part:<n>`` for chunk reads); the tests never spell it.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import dict_row
from redis import Redis
from rq import Queue

from shared.db import LABEL_PREFIX, export_label, export_label_pattern
from shared.settings import Settings

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def chunk_label_pattern(export_id: str) -> str:
    """A ``LIKE`` pattern matching the chunk reads (``…:part:<n>``) of the export."""
    return export_label(export_id, "part:%")


def chunk_rows(settings: Settings, export_id: str) -> list[dict]:
    """The export's rows in ``export_chunks``, by part number."""
    with psycopg.connect(settings.state_database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM export_chunks WHERE export_id = %s ORDER BY part_number", (export_id,)
        ).fetchall()


def chunk_row(settings: Settings, export_id: str, part_number: int) -> dict | None:
    """One chunk's row in ``export_chunks``, or None."""
    with psycopg.connect(settings.state_database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM export_chunks WHERE export_id = %s AND part_number = %s", (export_id, part_number)
        ).fetchone()


def export_queries(settings: Settings, export_id: str) -> list[str]:
    """The queries of the export's source reads that PostgreSQL still has a backend for."""
    with psycopg.connect(settings.state_database_url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT query FROM pg_stat_activity WHERE application_name LIKE %s", (export_label_pattern(export_id),)
            )
        ]


def copy_progress(settings: Settings, export_id: str) -> dict[int, int]:
    """Rows sent so far by each running chunk COPY of the export: ``{part number: rows}``.

    PostgreSQL counts rows as it writes them to the socket, so the worker has read at most
    this many.
    """
    with psycopg.connect(settings.state_database_url) as conn:
        rows = conn.execute(
            "SELECT a.application_name, p.tuples_processed FROM pg_stat_progress_copy p"
            " JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE %s",
            (chunk_label_pattern(export_id),),
        ).fetchall()
    return {int(label.rsplit(":", 1)[1]): sent for label, sent in rows}


def exports_and_jobs(settings: Settings, redis: Redis) -> tuple[int, int]:
    """(exports rows, queued jobs of no export): what a rejected request must leave unchanged.

    Jobs of existing exports (an earlier test's chunks still queued) are not counted: a
    rejected request that enqueued anything would show as a job whose export has no row,
    or as one more row.
    """
    with psycopg.connect(settings.state_database_url) as conn:
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM exports")}
    orphans = 0
    for name in (settings.queue_control, settings.queue_chunks):
        for job_id in Queue(name, connection=redis).job_ids:
            found = _UUID.search(job_id)
            orphans += found is None or found.group(0) not in ids
    return len(ids), orphans


def idle_in_transaction(settings: Settings) -> list[str]:
    """Spillway's connections PostgreSQL holds ``idle in transaction`` right now (labels): the
    API's at once, a worker's once it has been so for a second (a worker's own transaction sits
    idle for microseconds between its statements; a leaked one stays for minutes)."""
    with psycopg.connect(settings.state_database_url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'"
                " AND application_name LIKE %s AND (application_name NOT LIKE %s AND application_name NOT LIKE %s"
                "  OR state_change < now() - interval '1 second')",
                (f"{LABEL_PREFIX}:%", f"{LABEL_PREFIX}:state:%", f"{LABEL_PREFIX}:export:%"),
            )
        ]
