"""Chunk liveness on factory rows: a running chunk whose liveness lock nobody holds has lost its
process, and its lease ends at once; one whose lock a live session holds keeps its lease."""

from __future__ import annotations

import psycopg

from shared import chunks_repo
from shared.liveness import LOCK_CLASS, expire_dead_attempts, lock_key
from tests.support.factories import make_running_export


def _lease_live(conn, export_id, part_number) -> bool:
    return conn.execute(
        "SELECT lease_expires_at >= now() AS live FROM export_chunks WHERE export_id = %s AND part_number = %s",
        (export_id, part_number),
    ).fetchone()["live"]


def _twice(conn) -> list:
    """Two checks in a row, as the reconciler makes them (a lock must be free at both)."""
    suspects: set = set()
    first = expire_dead_attempts(conn, suspects, lease_s=0)
    return first + expire_dead_attempts(conn, suspects, lease_s=0)


def test_a_chunk_whose_lock_is_free_gets_its_lease_ended(state_conn):
    export_id = make_running_export(state_conn, parts=3, done=1, running=1)
    suspects: set = set()
    assert (export_id, 2) not in expire_dead_attempts(state_conn, suspects, lease_s=0)  # one sighting
    assert _lease_live(state_conn, export_id, 2)
    dead = expire_dead_attempts(state_conn, suspects, lease_s=0)
    assert (export_id, 2) in dead
    assert not _lease_live(state_conn, export_id, 2)
    assert any(c.part_number == 2 for c in chunks_repo.recoverable_chunks(state_conn) if c.export_id == export_id)
    assert (export_id, 2) not in _twice(state_conn)  # judged once: its lease is over


def test_a_chunk_whose_lock_a_live_process_holds_keeps_its_lease(state_conn, db):
    export_id = make_running_export(state_conn, parts=3, running=2)
    with psycopg.connect(db, autocommit=True) as alive:  # the attempt's process, alive
        alive.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(export_id, 1)))
        dead = _twice(state_conn)
        assert (export_id, 1) not in dead and _lease_live(state_conn, export_id, 1)
        assert (export_id, 2) in dead  # the other one has no live process
    # The process is gone (its session closed): now its chunk is dead too.
    assert (export_id, 1) in _twice(state_conn)


def test_nothing_is_judged_soon_after_the_state_database_restarted(state_conn):
    """A restart drops every session's locks; live processes take theirs again at their next block."""
    export_id = make_running_export(state_conn, parts=2, running=1)
    suspects: set = set()
    for _ in range(2):
        assert expire_dead_attempts(state_conn, suspects, lease_s=10**9) == []  # "started within the lease"
    assert _lease_live(state_conn, export_id, 1)


def test_only_the_attempt_that_holds_the_chunk_is_expired(state_conn):
    export_id = make_running_export(state_conn, parts=2, running=1)
    assert not chunks_repo.expire_lease(state_conn, export_id, 1, attempt=7)  # a superseded attempt
    assert _lease_live(state_conn, export_id, 1)
    assert not chunks_repo.expire_lease(state_conn, export_id, 2, attempt=0)  # pending: not running
