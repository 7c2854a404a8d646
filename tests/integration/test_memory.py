"""Bounded memory: a worker's peak RSS does not grow with the size of the export."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from api import create_app
from tests.support.api import ApiSession
from tests.support.databases import SEED, needs_seeding, prepare_database
from tests.support.jobs import chunk_jobs, reported_peak_rss_mb
from tests.support.workers import WorkerPool

BIG_ROWS = 5_000_000


@pytest.fixture(scope="module")
def big(settings, base_settings, bucket, redis, keys):
    """A database holding 5,000,000 products rows, with its own two workers and queues."""
    from seeds.seed import seed_products
    from shared.keys import create_key

    dbname = conninfo_to_dict(settings.state_database_url)["dbname"] + "_big"
    url = prepare_database(base_settings.state_database_url, dbname)
    with psycopg.connect(url, autocommit=True) as conn:
        if needs_seeding(conn, "products", BIG_ROWS):
            seed_products(conn, BIG_ROWS, SEED)
        key = create_key(conn, "alice")
    big_settings = settings.replace(state_database_url=url, source_database_url=url, queue_prefix="spillway-test-big")
    pool = WorkerPool(big_settings)
    pool.start(2)
    app = create_app(big_settings)
    yield big_settings, ApiSession(app.test_client(), key), redis
    pool.stop()
    app.extensions["spillway"].close()


def peak_rss_mb(redis, export: dict) -> float:
    """The largest peak RSS any chunk job of the export reported; every chunk job must be there."""
    parts = export["progress"]["parts_total"]
    jobs = chunk_jobs(redis, export["id"], parts)
    assert len(jobs) == parts, f"{parts - len(jobs)} chunk jobs of export {export['id']} are gone"
    return reported_peak_rss_mb(jobs)


@pytest.mark.slow
def test_worker_peak_rss_is_the_same_for_1m_and_5m_rows(big, capsys):
    settings, api, redis = big
    small, _ = api.wait(api.export({"dataset": "products", "filters": {"id": {"lte": 1_000_000}}})["id"], 600), None
    large = api.wait(api.export({"dataset": "products"})["id"], 900)
    assert small["status"] == large["status"] == "completed"
    assert large["progress"]["total_rows"] == BIG_ROWS
    rss_small, rss_large = peak_rss_mb(redis, small), peak_rss_mb(redis, large)
    with capsys.disabled():
        print(
            f"\nworker peak RSS: 1M rows {rss_small:.1f} MB ({small['progress']['parts_total']} parts), "
            f"5M rows {rss_large:.1f} MB ({large['progress']['parts_total']} parts)"
        )
    assert abs(rss_large - rss_small) / rss_small < 0.20
