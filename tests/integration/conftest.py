"""Integration fixtures: a real PostgreSQL test database, a real Redis DB, a real S3 bucket.

``make test`` starts the local stack's dependencies first; these fixtures only create what
belongs to the test run (the ``*_test`` database, Redis DB 15, a fresh bucket).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from redis import Redis

from api import create_app
from deploy.services import ensure_bucket
from shared.migrate import migrate
from shared.settings import Settings
from shared.storage import s3_client



@pytest.fixture(scope="session")
def db(settings: Settings, base_settings: Settings) -> str:
    """Create (if needed) and migrate the test database; return its URL."""
    dbname = conninfo_to_dict(settings.state_database_url)["dbname"]
    with psycopg.connect(base_settings.state_database_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        migrate(conn)
        from seeds.seed import apply_schema

        apply_schema(conn)
    return settings.state_database_url


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database."""
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


@pytest.fixture
def redis(settings: Settings) -> Iterator[Redis]:
    """The real Redis, on the dedicated test database index, flushed before each test."""
    client = Redis.from_url(settings.redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def bucket(settings: Settings) -> Iterator[str]:
    """A fresh bucket on the real S3 endpoint for this test session, removed afterwards."""
    ensure_bucket(settings)
    yield settings.s3_bucket
    client = s3_client(settings)
    for upload in client.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=settings.s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=settings.s3_bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=settings.s3_bucket)


@pytest.fixture
def app(settings: Settings, db: str, bucket: str, redis: Redis):
    """The API app wired to the test database, Redis DB and bucket."""
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    application.extensions["spillway"].close()


@pytest.fixture
def client(app):
    """A test client of the API."""
    return app.test_client()


