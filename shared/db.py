"""Database access: connections to the source data and to the export state.

Invariant: every connection opened here carries an ``application_name`` that says what it
is for (``spillway:api``, ``spillway:export:<id>``...), the UTC time zone, and, for export
queries, the configured statement timeout — so an operator can find and stop any query of
ours in ``pg_stat_activity``.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from shared.settings import Settings


def connect_state(settings: Settings, purpose: str = "spillway", **kwargs: object) -> psycopg.Connection:
    """Open a connection to the database that holds export state (rows as dicts)."""
    return psycopg.connect(
        settings.state_database_url,
        application_name=purpose[:63],
        options="-c TimeZone=UTC",
        row_factory=dict_row,
        connect_timeout=5,
        **kwargs,
    )


def connect_source(settings: Settings, purpose: str = "spillway", **kwargs: object) -> psycopg.Connection:
    """Open a connection to the source data with the statement timeout applied."""
    return psycopg.connect(
        settings.source_database_url,
        application_name=purpose[:63],
        options=f"-c TimeZone=UTC -c statement_timeout={settings.statement_timeout_ms}",
        connect_timeout=5,
        **kwargs,
    )
