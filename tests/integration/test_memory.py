"""Bounded memory: a worker's peak RSS does not grow with the size of the export."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from rq.job import Job

from api import create_app
from shared.migrate import ensure_database, migrate
from shared.queue import chunk_job_id
from tests.exports_support import ApiClient, WorkerPool
from tests.support import with_dbname

BIG_ROWS = 5_000_000


@pytest.fixture(scope="module")
def big(settings, base_settings, bucket, redis, keys):
    """A database holding 5,000,000 products rows, with its own two workers and queues."""
    from seeds.seed import apply_schema, seed_products

    dbname = conninfo_to_dict(settings.state_database_url)["dbname"] + "_big"
    url = with_dbname(settings.state_database_url, dbname)
    ensure_database(base_settings.state_database_url, dbname)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("TRUNCATE exports, export_chunks, api_keys")
        apply_schema(conn)
        if conn.execute("SELECT count(*) FROM products").fetchone()[0] != BIG_ROWS:
            seed_products(conn, BIG_ROWS, 42)
        from shared.keys import create_key

        key = create_key(conn, "alice")
    big_settings = settings.replace(state_database_url=url, source_database_url=url, queue_prefix="spillway-test-big")
    pool = WorkerPool(big_settings)
    pool.start(2)
    app = create_app(big_settings)
    yield big_settings, ApiClient(app.test_client(), key), redis
    pool.stop()
    app.extensions["spillway"].close()


def peak_rss_mb(redis, export: dict) -> float:
    """The largest peak RSS any chunk job of the export reported."""
    parts = export["progress"]["parts_total"]
    peaks = [Job.fetch(chunk_job_id(export["id"], n), connection=redis).meta["peak_rss_kb"] for n in range(1, parts + 1)]
    return max(peaks) / 1024


@pytest.mark.slow
def test_worker_peak_rss_is_the_same_for_1m_and_5m_rows(big, capsys):
    settings, api, redis = big
    small, _ = api.wait(api.export({"dataset": "products", "filters": {"id": {"lte": 1_000_000}}})["id"], 600), None
    large = api.wait(api.export({"dataset": "products"})["id"], 900)
    assert small["status"] == large["status"] == "completed"
    assert large["progress"]["total_rows"] == BIG_ROWS
    rss_small, rss_large = peak_rss_mb(redis, small), peak_rss_mb(redis, large)
    with capsys.disabled():
        print(f"\nworker peak RSS: 1M rows {rss_small:.1f} MB ({small['progress']['parts_total']} parts), "
              f"5M rows {rss_large:.1f} MB ({large['progress']['parts_total']} parts)")
    assert abs(rss_large - rss_small) / rss_small < 0.20
