"""The finalizer's own rules, on committed factory rows and with S3's completion replaced:
one finalizer at a time (its liveness lock), and a superseded one never fails the export."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from shared import exports_repo
from shared.liveness import FINALIZER_PART, LOCK_CLASS, lock_key
from shared.logs import log_context
from shared.models import ExportStatus
from tests.support.factories import make_running_export
from tests.support.waiting import wait_for
from worker import finalizer
from worker.uploads import StoredObject


class S3Down(Exception):
    """What the replaced completion raises."""


@pytest.fixture
def finishing(settings) -> Iterator[uuid.UUID]:
    """A running export with every part recorded, committed (the finalizer's session sees it)."""
    owner = f"finalizer-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        export_id = make_running_export(conn, parts=2, done=2, owner=owner)
        yield export_id
        conn.execute("DELETE FROM export_chunks WHERE export_id = %s", (export_id,))
        conn.execute("DELETE FROM exports WHERE id = %s", (export_id,))


def finalize(settings, redis, export_id) -> str:
    """The finalizer as its job runs it: the log fields it binds end with it."""
    with log_context():
        return finalizer.finalize(settings, redis, export_id)


def _export(settings, export_id):
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        return exports_repo.get_export(conn, export_id)


def test_a_finalizer_that_finds_the_lock_held_skips_without_claiming(settings, redis, finishing):
    """Claiming without the lock, it would be taken for dead (lock free) as soon as the
    holder ended, and run twice."""
    with psycopg.connect(settings.state_database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(finishing, FINALIZER_PART)))
        said = finalize(settings, redis, finishing)
    assert said.startswith("skipped: another finalizer"), said
    assert _export(settings, finishing).finalize_attempt == 0  # nothing claimed


def test_a_failure_after_a_newer_attempt_took_over_does_not_fail_the_export(settings, redis, finishing, monkeypatch):
    def taken_over_then_down(*args, **kwargs):
        with psycopg.connect(settings.state_database_url, autocommit=True) as conn:  # the reconciler ended the lease;
            conn.execute("UPDATE exports SET finalize_attempt = finalize_attempt + 1 WHERE id = %s", (finishing,))
        raise S3Down("CompleteMultipartUpload: 503")  # ... and this attempt's completion fails

    monkeypatch.setattr(finalizer, "complete_upload", taken_over_then_down)
    said = finalize(settings, redis, finishing)
    assert said.startswith("rejected: a newer finalize attempt"), said
    assert _export(settings, finishing).status == ExportStatus.RUNNING  # left to the newer attempt


def test_a_failure_of_the_current_attempt_is_raised_for_its_retry(settings, redis, finishing, monkeypatch):
    def down(*args, **kwargs):
        raise S3Down("CompleteMultipartUpload: 503")

    monkeypatch.setattr(finalizer, "complete_upload", down)
    with pytest.raises(S3Down):
        finalize(settings, redis, finishing)
    assert _export(settings, finishing).finalize_attempt == 1
    # Its lease ended with it: the job's RQ retry can claim at once (it skipped while the lease
    # stood, and the export never failed, however often S3 did).
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        assert exports_repo.claim_finalize(conn, finishing, 30) == 2


def test_a_finalizer_takes_over_from_a_frozen_one_whose_lease_ran_out(settings, redis, finishing, monkeypatch):
    """The lock held by attempt 1, frozen past its lease: the lease is the fallback, so the
    next finalizer claims attempt 2 without the lock (and is fenced like any other)."""
    with psycopg.connect(settings.state_database_url, autocommit=True) as frozen:
        assert exports_repo.claim_finalize(frozen, finishing, 30) == 1
        frozen.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(finishing, FINALIZER_PART)))
        frozen.execute(
            "UPDATE exports SET finalize_lease_expires_at = now() - interval '1 second' WHERE id = %s", (finishing,)
        )

        def down(*args, **kwargs):
            raise S3Down("CompleteMultipartUpload: 503")

        monkeypatch.setattr(finalizer, "complete_upload", down)
        with pytest.raises(S3Down):  # it claimed and got as far as S3
            finalize(settings, redis, finishing)
    assert _export(settings, finishing).finalize_attempt == 2


def _lease_ends_at(conn, export_id):
    return conn.execute("SELECT finalize_lease_expires_at FROM exports WHERE id = %s", (export_id,)).fetchone()[0]


def test_the_lease_is_renewed_while_s3_completes(settings, redis, finishing, monkeypatch):
    """S3 may take minutes over a big CompleteMultipartUpload, one request: the lease is renewed
    meanwhile, so no other attempt takes the finalizer for frozen and runs beside it."""
    quick = settings.replace(lease_s=1)
    ends = []

    def slow_completion(*args, **kwargs):
        with psycopg.connect(settings.state_database_url, autocommit=True) as conn:

            def renewed_twice() -> bool:
                end = _lease_ends_at(conn, finishing)
                if not ends or end > ends[-1]:
                    ends.append(end)
                return len(ends) >= 3  # the claim's lease, then two renewals

            wait_for(renewed_twice, timeout=10, interval=0.02, what="the lease renewed twice during the completion")
            assert exports_repo.claim_finalize(conn, finishing, 1, taken_over=True) is None  # no take-over
        return StoredObject(size=0, etag='"done"')

    monkeypatch.setattr(finalizer, "complete_upload", slow_completion)
    said = finalize(quick, redis, finishing)
    assert said.startswith("completed"), said
    export = _export(settings, finishing)
    assert (export.status, export.finalize_attempt) == (ExportStatus.COMPLETED, 1)
