"""Liveness of running chunks and planners: an advisory lock the process holds while it runs.

Invariant: the process running an attempt of chunk ``(export, part)`` holds the session-level
advisory lock ``(LOCK_CLASS, lock_key(export, part))`` on the state database from before it
claims the chunk until it ends, and PostgreSQL releases it the moment that process dies (its
connection closes). So a running chunk whose lease has not expired but whose lock nobody
holds has lost its process: :func:`expire_dead_attempts` expires its lease at once, and the
reconciler re-runs it within a second or two instead of waiting out the lease. The lease stays
the fallback for a process that is alive but stuck (a SIGSTOPped zombie keeps its lock).

An export's planner holds the lock of part :data:`PLANNER_PART` the same way, so a planner
whose process died is run again within seconds, not when RQ gives its job up (minutes later);
its finalizer holds the lock of part :data:`FINALIZER_PART`, so a dead finalizer's lease is
ended, and the finalizer run again, within seconds too.

Two chunks may share a lock key (a 32-bit hash): then a dead one's lock looks held while the
other runs, and its recovery waits for the lease, as before.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from shared import chunks_repo
from shared.db import connect_state, state_label
from shared.records import fetch_tuples
from shared.settings import Settings

T = TypeVar("T")
LOCK_CLASS = 0x5357_4C56 & 0x7FFF_FFFF  # "SWLV": the first key of every chunk liveness lock
PLANNER_PART = 0  # an export's planner holds the lock of "part 0" while it plans (chunks are 1 and up)
FINALIZER_PART = -1  # and its finalizer the lock of "part -1" while it completes the object


def lock_key(export_id: uuid.UUID, part_number: int) -> int:
    """The second key of the chunk's lock, as the signed 32-bit integer pg_advisory_lock takes."""
    unsigned = zlib.crc32(f"{export_id}:{part_number}".encode())
    return unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned


class AttemptLiveness:
    """The lock held by the process running a chunk attempt (close it when the attempt ends).

    If another live process holds the key (a zombie of an earlier attempt, or a hash
    collision), the lock is taken as soon as it is free: :meth:`ensure` is called at every block.
    """

    def __init__(self, settings: Settings, export_id: uuid.UUID, part_number: int) -> None:
        self._key = lock_key(export_id, part_number)
        self._settings, self._label = settings, state_label(f"alive:{part_number}", export_id)
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self.held = False
        self.ensure()

    def ensure(self) -> None:
        """Hold the lock: take it if this process does not hold it yet (a zombie of an earlier
        attempt did), and again on a new session if the state database dropped this one (a
        restart, a terminated backend). One short query a block; never waits."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn, self.held = connect_state(self._settings, self._label), False
            if not self.held:
                rows = fetch_tuples(self._conn, "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, self._key))
                self.held = bool(rows[0][0])
            else:
                fetch_tuples(self._conn, "SELECT 1")  # still our session, so still our lock
        except psycopg.OperationalError:
            self.close()  # the next block reconnects; meanwhile the lease covers the chunk
            self.held = False

    def session(self) -> psycopg.Connection[dict[str, Any]]:
        """The attempt's state session, for its bookkeeping too (claim, lease, part record):
        one connection an attempt instead of one a step (each costs both sides a few ms of
        CPU for the connection and its password exchange). Opened again, with the lock taken
        again, if the state database dropped it."""
        if self._conn is None or self._conn.closed:
            self.ensure()
        if self._conn is None or self._conn.closed:
            raise psycopg.OperationalError("the state database cannot be reached (the attempt's session is closed)")
        return self._conn

    def close(self) -> None:
        """End the attempt's session: PostgreSQL releases the lock with it."""
        if self._conn is not None:
            self._conn.close()


def run_holding(
    settings: Settings,
    export_id: uuid.UUID,
    part_number: int,
    work: Callable[[AttemptLiveness], T],
    unheld: str | Callable[[AttemptLiveness], T],
) -> T | str:
    """Run ``work`` holding the liveness lock of ``(export, part)`` from its start to its end;
    when another live process holds it, run ``unheld`` instead, or return it if it is a
    message (one planner, one finalizer at a time).

    Raises when the state database cannot be reached (RQ retries the job). Both get the
    lock's session as their state connection.
    """
    liveness = AttemptLiveness(settings, export_id, part_number)
    try:
        liveness.session()
        if liveness.held:
            return work(liveness)
        return unheld if isinstance(unheld, str) else unheld(liveness)
    finally:
        liveness.close()


def expire_dead_attempts(
    conn: psycopg.Connection[Any], suspects: set[tuple[uuid.UUID, int, int]], lease_s: float
) -> list[tuple[uuid.UUID, int]]:
    """Expire the lease of every running chunk whose process died; return those chunks.

    The running chunks are read before the locks: a chunk claimed after the first read is not
    judged, and one whose lock is gone by the second read either ended (its status changed,
    so expiring is a no-op, fenced by its attempt) or died. An attempt is expired only when
    its lock was free at two checks in a row (``suspects`` carries the first sighting from
    one call to the next), and not at all within ``lease_s`` of a restart of the state
    database, which dropped every session's locks: live processes take theirs again at
    their next block.
    """
    running = chunks_repo.leased_attempts(conn)
    if not running or restarted_within(conn, lease_s):
        suspects.clear()
        return []
    held = held_keys(conn)
    free = {(e, p, a) for e, p, a in running if lock_key(e, p) & 0xFFFF_FFFF not in held}
    dead = [
        (export_id, part_number)
        for export_id, part_number, attempt in sorted(free & suspects)
        if chunks_repo.expire_lease(conn, export_id, part_number, attempt)
    ]
    suspects.clear()
    suspects.update(free - {(e, p, a) for e, p, a in free if (e, p) in dead})
    return dead


def restarted_within(conn: psycopg.Connection[Any], seconds: float) -> bool:
    """Whether the state database started less than ``seconds`` ago (which dropped every lock)."""
    ((restarted,),) = fetch_tuples(
        conn, "SELECT pg_postmaster_start_time() > now() - make_interval(secs => %s)", (seconds,)
    )
    return bool(restarted)


def held_keys(conn: psycopg.Connection[Any]) -> set[int]:
    """The second keys (unsigned) of every liveness lock some session of this database holds."""
    return {
        int(objid)
        for (objid,) in fetch_tuples(
            conn,
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LOCK_CLASS,),
        )
    }


def dead_holders(
    conn: psycopg.Connection[Any],
    started: list[tuple[uuid.UUID, int]],
    suspects: set[tuple[uuid.UUID, int]],
    lease_s: float,
) -> list[tuple[uuid.UUID, int]]:
    """Of the ``(export, part)`` whose job a worker took (RQ calls it started, or it was popped
    from its queue) but that no attempt has claimed (a planner, part :data:`PLANNER_PART`; a
    pending chunk), or whose finalizer holds a live lease (part :data:`FINALIZER_PART`), those
    whose process died: the lock of that part free at two checks in a
    row (``suspects`` carries the first sighting), as for running chunks. Such a job takes the
    lock first thing, well within the second between two checks; RQ itself gives a started
    job of a dead worker up only minutes later, and a popped one never."""
    if not started or restarted_within(conn, lease_s):
        suspects.clear()
        return []
    held = held_keys(conn)
    free = {(e, p) for e, p in started if lock_key(e, p) & 0xFFFF_FFFF not in held}
    dead = sorted(free & suspects)
    suspects.clear()
    suspects.update(free - set(dead))
    return dead
