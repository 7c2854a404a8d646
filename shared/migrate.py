"""Schema migrations of the state database: ordered SQL files, each applied exactly once.

Invariant: running :func:`migrate` any number of times, from any number of processes at
once, leaves the schema at the newest version (an advisory lock serialises the runners and
``schema_migrations`` records what was applied).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.settings import Settings, load_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x5350_4C57  # "SPLW": the advisory lock that serialises migration runners


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the pending migrations in file-name order; return the names applied."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations").fetchall()}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name in done:
                continue
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
            applied.append(path.name)
    return applied


def ensure_database(admin_url: str, dbname: str) -> str:
    """Create database ``dbname`` on the server of ``admin_url`` if missing; return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    params = conninfo_to_dict(admin_url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def migrate_url(url: str) -> list[str]:
    """Open ``url`` and migrate it."""
    with psycopg.connect(url, autocommit=True) as conn:
        return migrate(conn)


def main(settings: Settings | None = None) -> None:
    """Command line: ``python -m shared.migrate``."""
    argparse.ArgumentParser(description="Apply the state database migrations.").parse_args()
    settings = settings or load_settings()
    applied = migrate_url(settings.state_database_url)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


if __name__ == "__main__":
    main()
