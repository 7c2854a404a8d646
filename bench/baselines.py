"""What Spillway is measured against: the physical floor and the naive first attempt.

- floor: ``psql \\copy (the same query) TO file`` then ``aws s3 cp`` of that file to the
  same S3 endpoint — the least work that produces the same object.
- plain floor: the same with the table's own ``SELECT * … ORDER BY key`` (no rendering):
  what a user weighs an export service against.
- naive: ``LIMIT/OFFSET`` pages, Python's ``csv.writer``, one PUT.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import psycopg
from psycopg import sql

from shared.datasets import registry
from shared.db import CopyOut, connect_source, process_label
from shared.query import chunk_copy, where_clause
from shared.settings import Settings
from shared.spec import parse_spec
from shared.storage import s3_client
from tests.support.processes import cpu_seconds

PAGE_ROWS = 10_000


def _copy_query(body: dict, plain: bool) -> tuple[sql.Composed, list]:
    """``COPY (<query>) TO STDOUT (FORMAT csv)`` of the export's rendering query, or with
    ``plain`` of ``SELECT * FROM <table> WHERE <the same filters> ORDER BY <key>``."""
    spec = parse_spec(body)
    dataset = spec.source
    if not plain:
        return chunk_copy(dataset, spec, None, None)
    where, params = where_clause(dataset, spec)
    query = sql.SQL("COPY (SELECT * FROM {} WHERE {} ORDER BY {}) TO STDOUT (FORMAT csv)").format(
        dataset.table, where, sql.Identifier(dataset.key.name)
    )
    return query, params


def floor_seconds(settings: Settings, body: dict, plain: bool = False) -> float:
    """Seconds for ``psql \\copy`` of the export's own query to a file plus ``aws s3 cp``;
    with ``plain``, of ``SELECT * FROM <table> WHERE <the same filters> ORDER BY <key>``.

    A run whose transfer fails (seen once with moto, with no message) is measured again from
    the start, never counted.
    """
    query, params = _copy_query(body, plain)
    with psycopg.connect(settings.source_database_url) as conn:
        statement = psycopg.ClientCursor(conn).mogrify(query, params)
    select = statement[len("COPY (") : statement.rindex(") TO STDOUT")]
    for attempt in (1, 2):
        key = f"bench/floor/{uuid.uuid4()}.csv"  # outside the exports prefix: the janitor owns that
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "floor.csv")
            started = time.perf_counter()
            subprocess.run(
                [
                    "psql",
                    "-q",
                    "-X",
                    settings.source_database_url,
                    "-c",
                    "SET TimeZone = 'UTC'",
                    "-c",
                    "SET DateStyle = 'ISO'",
                    "-c",
                    f"\\copy ({select}) TO '{path}' WITH (FORMAT csv, HEADER)",
                ],
                check=True,
            )
            try:
                _s3_cp(settings, path, key)
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            seconds = time.perf_counter() - started
        s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=key)
        return seconds
    raise AssertionError("unreachable")


def copy_cpu_seconds(settings: Settings, body: dict, plain: bool = False) -> float:
    """CPU seconds of the one PostgreSQL backend running ``COPY (<query>) TO STDOUT`` to a
    client that discards the bytes: the export's own rendering query, or with ``plain`` the
    plain floor's ``SELECT *`` (what a plain ``COPY`` of the same rows costs the database)."""
    query, params = _copy_query(body, plain)
    with connect_source(settings, process_label("bench")) as conn:
        conn.autocommit = True
        backend = conn.info.backend_pid
        before = cpu_seconds(backend, False)
        for _ in CopyOut(conn, query, params, 1 << 20):
            pass
        return cpu_seconds(backend, False) - before


def _s3_cp(settings: Settings, path: str, key: str) -> None:
    """``aws s3 cp`` (the AWS CLI, if installed; otherwise boto3's managed transfer, its engine)."""
    if not shutil.which("aws"):
        s3_client(settings).upload_file(path, settings.s3_bucket, key)
        return
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=settings.s3_access_key_id,
        AWS_SECRET_ACCESS_KEY=settings.s3_secret_access_key,
        AWS_DEFAULT_REGION=settings.s3_region,
    )
    done = subprocess.run(
        [
            "aws",
            "--endpoint-url",
            settings.s3_endpoint_url,
            "s3",
            "cp",
            path,
            f"s3://{settings.s3_bucket}/{key}",
            "--only-show-errors",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"aws s3 cp failed ({done.returncode}): {(done.stderr + done.stdout).strip()[-800:]}")


def naive_seconds(settings: Settings, rows: int) -> float:
    """Seconds for the export a team writes first: OFFSET pages, csv.writer, one PUT."""
    key = f"bench/naive/{uuid.uuid4()}.csv"
    started = time.perf_counter()
    out = io.StringIO()
    writer = csv.writer(out)
    columns = list(registry()["products"].column_names)
    writer.writerow(columns)
    with psycopg.connect(settings.source_database_url) as conn:
        offset = 0
        while True:
            page = conn.execute(
                f"SELECT {', '.join(columns)} FROM products WHERE id <= %s ORDER BY id LIMIT %s OFFSET %s",
                (rows, PAGE_ROWS, offset),
            ).fetchall()
            if not page:
                break
            writer.writerows(page)
            offset += len(page)
    s3_client(settings).put_object(Bucket=settings.s3_bucket, Key=key, Body=out.getvalue().encode())
    seconds = time.perf_counter() - started
    s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=key)
    return seconds
