"""Protecting the database: a global cap on chunk reads, a per-owner cap on running exports,
fairness between owners, and a statement timeout on every export query."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from api import create_app
from tests.support.api import ApiSession
from tests.support.s3 import uploads_for
from tests.support.state import export_queries
from tests.support.waiting import wait_for
from tests.support.workers import WorkerPool


class Sampler(threading.Thread):
    """Samples a query every few milliseconds until stopped; keeps every answer."""

    def __init__(self, url: str, query: str, params: tuple = ()) -> None:
        super().__init__(daemon=True)
        self.url, self.query, self.params = url, query, params
        self.samples: list = []
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.is_set():
                self.samples.append(conn.execute(self.query, self.params).fetchall())
                time.sleep(0.005)

    def stop(self) -> list:
        self.done.set()
        self.join()
        return self.samples


@pytest.fixture
def limited(settings, seeded, bucket, redis, keys_for, request):
    """A separate queue set served by its own workers, with the settings a test asks for."""
    options = request.param
    workers = options.pop("workers", 4)
    limited_settings = settings.replace(queue_prefix=f"spillway-test-{request.node.name[:20]}", **options)
    pool = WorkerPool(limited_settings)
    pool.start(workers)
    app = create_app(limited_settings)
    yield limited_settings, lambda owner: ApiSession(app.test_client(), keys_for(owner))
    pool.stop()
    app.extensions["spillway"].close()


ACTIVE_READS = (
    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY%%'"
    " AND split_part(application_name, ':', 3) IN (SELECT id::text FROM exports WHERE owner LIKE %s)"
)


@pytest.mark.parametrize("limited", [{"max_concurrent_reads": 2, "workers": 4}], indirect=True)
def test_global_cap_bounds_concurrent_reads(limited, capsys):
    settings, client_for = limited
    sampler = Sampler(settings.source_database_url, ACTIVE_READS, ("cap-owner-%",))
    sampler.start()
    clients = [client_for(f"cap-owner-{n}") for n in range(3)]
    exports = [
        (c, c.export({"dataset": "products", "filters": {"id": {"gt": n * 300_000, "lte": (n + 1) * 300_000}}}))
        for n, c in enumerate(clients)
    ]
    for client, export in exports:
        assert client.wait(export["id"])["status"] == "completed"
    counts = [s[0][0] for s in sampler.stop()]
    with capsys.disabled():
        print(
            f"\nglobal cap 2, 4 workers, 3 exports: at most {max(counts)} concurrent export reads "
            f"in {len(counts)} samples of pg_stat_activity"
        )
    assert max(counts) == settings.max_concurrent_reads  # reached, never exceeded


@pytest.mark.parametrize(
    "limited", [{"max_running_per_owner": 2, "max_concurrent_reads": 4, "workers": 3}], indirect=True
)
def test_per_owner_cap_and_other_owners_are_not_held_back(limited, capsys):
    settings, client_for = limited
    dave, erin = client_for("dave"), client_for("erin")
    sampler = Sampler(
        settings.state_database_url, "SELECT count(*) FROM exports WHERE owner = 'dave' AND status = 'running'"
    )
    sampler.start()
    daves = [dave.export({"dataset": "products", "filters": {"id": {"lte": 200_000 + n}}}) for n in range(5)]
    erins = erin.export({"dataset": "products", "filters": {"id": {"lte": 50_000}}})
    finished = [dave.wait(e["id"]) for e in daves]
    erin_done = erin.wait(erins["id"])
    counts = [s[0][0] for s in sampler.stop()]
    assert all(e["status"] == "completed" for e in finished) and erin_done["status"] == "completed"
    assert max(counts) == 2
    assert erin_done["finished_at"] < max(e["finished_at"] for e in finished)
    with psycopg.connect(settings.state_database_url) as conn:
        admitted = [
            r[0]
            for r in conn.execute(
                "SELECT admitted_at FROM exports WHERE id = ANY(%s) ORDER BY created_at", ([e["id"] for e in daves],)
            )
        ]
        assert admitted == sorted(admitted), "dave's waiting exports are admitted in the order they were created"
        wait = conn.execute(
            "SELECT extract(epoch FROM started_at - created_at) FROM exports WHERE id = %s", (erins["id"],)
        ).fetchone()[0]
    with capsys.disabled():
        print(f"\nper-owner cap 2: dave ran at most {max(counts)} of 5 at a time; erin's export waited {wait:.2f} s")


@pytest.mark.slow
@pytest.mark.parametrize("limited", [{"workers": 2}], indirect=True)
def test_small_export_is_not_stuck_behind_a_big_one(limited, capsys):
    settings, client_for = limited
    big_owner, small_owner = client_for("frank"), client_for("grace")
    big = big_owner.export({"dataset": "products"})
    wait_for(lambda: big_owner.status(big["id"])["progress"]["parts_done"] >= 2, what="the big export to be under way")
    small = small_owner.export({"dataset": "products", "filters": {"id": {"lte": 20_000}}})
    small_done = small_owner.wait(small["id"])
    big_done = big_owner.wait(big["id"])
    assert small_done["status"] == big_done["status"] == "completed"
    assert small_done["finished_at"] < big_done["finished_at"]
    with psycopg.connect(settings.state_database_url) as conn:
        wait, total = conn.execute(
            "SELECT extract(epoch FROM started_at - created_at), extract(epoch FROM finished_at - created_at)"
            " FROM exports WHERE id = %s",
            (small["id"],),
        ).fetchone()
    with capsys.disabled():
        print(
            f"\nfairness: a 20,000-row export during a 1,000,000-row one started after {wait:.2f} s, "
            f"finished after {total:.2f} s"
        )


@pytest.mark.parametrize(
    "limited", [{"statement_timeout_ms": 3000, "retry_delays_s": "1,1", "workers": 2}], indirect=True
)
def test_statement_timeout_fails_the_chunk_clearly_after_its_retries(limited):
    settings, client_for = limited
    owner = client_for("heidi")
    export = owner.export({"dataset": "products", "filters": {"id": {"lte": 300_000}}})
    with psycopg.connect(settings.source_database_url) as blocker:
        wait_for(lambda: owner.status(export["id"])["status"] != "queued", what="planning")
        # Chunk reads now wait on this lock longer than the statement timeout allows.
        blocker.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        done = owner.wait(export["id"], timeout=120)
        blocker.rollback()
    assert done["status"] == "failed"
    assert "statement timeout" in done["error"] and "part" in done["error"]
    with psycopg.connect(settings.state_database_url) as conn:
        attempts = conn.execute(
            "SELECT max(attempt) FROM export_chunks WHERE export_id = %s", (export["id"],)
        ).fetchone()[0]
    assert attempts == 1 + len(settings.retry_delays)  # the first try and each retry
    # A failed export, like a cancelled one, leaves no upload and no query behind.
    with psycopg.connect(settings.state_database_url) as conn:
        key = conn.execute("SELECT object_key FROM exports WHERE id = %s", (export["id"],)).fetchone()[0]
    assert uploads_for(settings, key) == []
    wait_for(lambda: not export_queries(settings, export["id"]), timeout=10, what="the export's queries to end")
