"""The reconciler: Postgres says what must be running; Redis is made to agree.

Run as its own process (``python -m worker.reconciler``, the Procfile's ``reconciler``); every
``SPILLWAY_RECONCILE_INTERVAL_S`` it:

- enqueues due retries (RQ's scheduled jobs) of a queue no live RQ scheduler serves
  (:mod:`worker.scheduling`), so a killed scheduler delays them by one interval, not ten minutes;
- replaces the job of every chunk whose lease expired (its worker died or froze) or whose
  job is gone from Redis (Redis restarted empty, a job lost);
- re-enqueues lost planners and finalizers, refills chunk windows, admits waiting exports;
- expires completed exports past their TTL (object deleted, status ``expired``);
- aborts multipart uploads that no queued or running export owns, and deletes staged chunk
  objects of exports that ended (the janitor).

Invariant: every action is idempotent and fenced in Postgres, so running it twice, or two
reconcilers at once, is harmless; recovery of a dead chunk is bounded by the lease plus one
interval, independent of RQ's own abandoned-job cleanup, and a due retry waits at most one
interval more than its delay (or, if RQ's scheduler died just before it was due, one interval
after ``SCHEDULER_STALE_S`` without its heartbeat).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

from shared import chunks_repo, datasets, exports_repo, metrics, webhooks
from shared import queue as q
from shared.db import connect_state, state_label
from shared.lifecycle import admit, fill_window
from shared.liveness import FINALIZER_PART, PLANNER_PART, dead_holders, expire_dead_attempts
from shared.logs import configure_logging, log_context
from shared.models import Chunk, ChunkStatus, Export, ExportStatus
from shared.settings import Settings, load_settings
from shared.storage import export_id_of_key, s3_client, staged_root
from worker.assembly import delete_staged
from worker.scheduling import enqueue_due_jobs, is_stranded
from worker.uploads import abort_upload

log = logging.getLogger("spillway.reconciler")
T = TypeVar("T")

# A scheduled job counts as waiting, also once due: the pass has just moved it unless a live RQ
# scheduler serves its queue (which moves it within a second); calling it lost would run it twice.
# One that no scheduled registry holds would never run: job_state calls it stranded, not waiting.
WAITING = {"queued", "scheduled", "deferred", "rate_limited", "created"}  # RQ statuses of a job not yet started
LIVE = WAITING | {"started"}
LOST_JOB_GRACE_S = 1.0  # a job missing from Redis this long is lost (one on its way takes milliseconds)
MissingJobs = dict[tuple[uuid.UUID, int, "str | None"], float]  # (export, part, job id) -> first seen (monotonic)
STRANDED = "stranded"  # not an RQ status: RQ says scheduled, but no scheduled registry holds the job
EXPIRE_BATCH = 100  # completed exports expired per pass at most
LOCK_TTL_INTERVALS = 3  # the reconciler lock outlives this many intervals without renewal
Conn = psycopg.Connection[Any]

# Take the lock, or extend it if this reconciler holds it; one atomic step, so a reconciler
# can never extend a lock another one took after its own expired.
_TAKE_OR_EXTEND = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
return 0
"""


def job_state(redis: Redis, job_id: str | None) -> str | None:
    """The RQ status of a job, ``stranded`` for a scheduled one nothing would enqueue, or None
    when Redis does not have it."""
    if not job_id:
        return None
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    state = str(status.value if hasattr(status, "value") else status) if status else None
    return STRANDED if state == "scheduled" and is_stranded(redis, job) else state


def _replace_job(redis: Redis, job_id: str) -> None:
    try:
        Job.fetch(job_id, connection=redis).delete()
    except NoSuchJobError:
        pass


def recover_chunks(
    conn: Conn,
    redis: Redis,
    settings: Settings,
    died: Collection[tuple[uuid.UUID, int]] = (),
    missing: MissingJobs | None = None,
    unclaimed: set[tuple[uuid.UUID, int]] | None = None,
    lease_s: float = 0,
) -> int:
    """Replace the jobs of chunks with an expired lease, or waiting on a job Redis lost
    (``died``: the chunks whose lease was ended because their process died, for the metrics).

    A chunk's new job id is committed to Postgres a moment before the job reaches Redis, so a
    job found missing may be on its way. With ``missing`` (the first sighting of each missing
    job, carried from one call to the next) it counts as lost only once it has been missing for
    :data:`LOST_JOB_GRACE_S`; without it, at once (a one-off pass).

    With ``unclaimed`` (the quick step's sightings), a pending chunk whose job a worker took
    (:func:`_taken`) is replaced too when that worker died before claiming the chunk: its
    liveness lock free at two checks in a row (:func:`shared.liveness.dead_holders`). RQ keeps
    such a job started until it gives the dead worker up, minutes later, or, popped from the
    queue and not yet marked started, queued for ever.
    """
    recovered, now, seen = 0, time.monotonic(), set()
    chunks = chunks_repo.recoverable_chunks(conn)
    states = {(c.export_id, c.part_number): job_state(redis, c.job_id) for c in chunks}
    dead: set[tuple[uuid.UUID, int]] = set()
    if unclaimed is not None:
        queue = q.chunk_queue(redis, settings)
        taken = [
            (c.export_id, c.part_number)
            for c in chunks
            if c.status == ChunkStatus.PENDING and _taken(queue, c.job_id, states[(c.export_id, c.part_number)])
        ]
        dead = set(dead_holders(conn, taken, unclaimed, lease_s))
    for chunk in chunks:
        part = (chunk.export_id, chunk.part_number)
        state = states[part]
        if chunk.status == ChunkStatus.PENDING and state in LIVE and part not in dead:
            continue  # waiting for a worker, or just starting
        if chunk.status == ChunkStatus.RUNNING and state in WAITING:
            continue  # a replacement is already waiting for a worker
        if chunk.status == ChunkStatus.PENDING and state is None and missing is not None:
            sighting = (chunk.export_id, chunk.part_number, chunk.job_id)
            seen.add(sighting)
            if now - missing.setdefault(sighting, now) < LOST_JOB_GRACE_S:
                continue  # first seen just now: it may be on its way
        recovered += _recover(conn, redis, settings, chunk, state, part in died or part in dead)
    if missing is not None:
        for key in set(missing) - seen:
            del missing[key]  # arrived, or replaced
    return recovered


def _popped(queue: Queue, job_id: str | None, state: str | None) -> bool:
    """Whether a worker popped the job and has not marked it started (yet, or ever: it died):
    RQ calls it queued, and its queue no longer holds it."""
    return state == "queued" and queue.get_job_position(job_id or "") is None


def _taken(queue: Queue, job_id: str | None, state: str | None) -> bool:
    """Whether a worker took the job: RQ calls it started, or the worker popped it."""
    return state == "started" or _popped(queue, job_id, state)


def _recover(conn: Conn, redis: Redis, settings: Settings, chunk: Chunk, state: str | None, died: bool) -> int:
    recovery = chunks_repo.next_recovery(conn, chunk.export_id, chunk.part_number, chunk.job_id)
    if recovery is None:
        return 0
    q.enqueue_chunks(redis, settings, chunk.export_id, [chunk.part_number], recovery)
    running = chunk.status == ChunkStatus.RUNNING
    if died and not running and chunk.job_id:
        # The dead worker's job holds a slot of the global read limit while RQ calls it queued
        # or started; gone, RQ's maintenance frees the slot.
        _replace_job(redis, chunk.job_id)
    cause = "process_died" if died else "lease_expired" if running else "job_lost"
    metrics.count(redis, settings, "spillway_recoveries", cause=cause)
    with log_context(export=chunk.export_id, part=chunk.part_number):
        log.warning(
            "%s (job %s is %s); enqueued recovery %d",
            "lease expired" if running else "its job's process died before claiming it" if died else "job lost",
            chunk.job_id,
            state,
            recovery,
        )
    return 1


def _needs_planner(export: Export) -> bool:
    """Admitted and not planned yet, or running with its streamed plan unfinished."""
    admitted = export.status == ExportStatus.QUEUED and export.admitted_at is not None
    return admitted or (export.status == ExportStatus.RUNNING and export.parts_total is None)


def recover_dead_planners(conn: Conn, redis: Redis, settings: Settings, suspects: set[tuple[uuid.UUID, int]]) -> int:
    """Run again at once the planner of every export whose planner job a worker took (RQ calls
    it started, or it was popped and never marked started) but whose process died (its
    liveness lock free, :func:`shared.liveness.dead_holders`); RQ itself gives a started job
    up only minutes later, and a popped one never. Return how many."""
    queue = q.control_queue(redis, settings)
    started = [
        (e.id, PLANNER_PART)
        for e in exports_repo.unfinished_exports(conn)
        if _needs_planner(e) and _taken(queue, q.plan_job_id(e.id), job_state(redis, q.plan_job_id(e.id)))
    ]
    dead = [export_id for export_id, _ in dead_holders(conn, started, suspects, settings.lease_s)]
    for export_id in dead:
        _replace_job(redis, q.plan_job_id(export_id))
        q.enqueue_plan(redis, settings, export_id)
        metrics.count(redis, settings, "spillway_recoveries", cause="planner_died")
        with log_context(export=export_id):
            log.warning("the process running this export's planner died (its liveness lock is free); enqueued again")
    return len(dead)


def recover_dead_finalizers(conn: Conn, redis: Redis, settings: Settings, suspects: set[tuple[uuid.UUID, int]]) -> int:
    """Run the finalizer again at once for every export whose finalizer process died (its
    liveness lock free, :func:`shared.liveness.dead_holders`): one that claimed the export
    (its lease is ended, fenced by its attempt, instead of waited out) or whose job a worker
    took and never claimed with (RQ keeps that job started for minutes, a popped one for
    ever). Return how many.

    A claimed attempt, or one whose lease ended, is judged while RQ calls one of the export's
    finalize jobs started (``finalize-n`` claims attempt *n*, its RQ retries the next ones; a
    job that raised is started until RQ records its retry, milliseconds later): a finalize that
    raised ended its own lease, and its RQ retry, with its backoff and its limit, runs it again.
    The dead process's started jobs are deleted, so that no pass takes them for live.
    """
    queue = q.control_queue(redis, settings)
    attempts: dict[tuple[uuid.UUID, int], tuple[int, bool, list[str]]] = {}
    for export_id, attempt, leased in exports_repo.finalizers(conn):
        # Started: a job that claimed, or one between a failure and RQ's record of its retry.
        jobs = [q.finalize_job_id(export_id, n) for n in range(1, attempt + 1)]
        started = [job_id for job_id in jobs if job_state(redis, job_id) == "started"]
        following = q.finalize_job_id(export_id, attempt + 1)
        if not leased and _taken(queue, following, job_state(redis, following)):
            started.append(following)
        if started:
            attempts[(export_id, FINALIZER_PART)] = (attempt, leased, started)
    recovered = 0
    for part in dead_holders(conn, list(attempts), suspects, settings.lease_s):
        export_id, (attempt, leased, started) = part[0], attempts[part]
        job_id = q.finalize_job_id(export_id, attempt + 1)
        if leased and not exports_repo.expire_finalize(conn, export_id, attempt):
            continue  # it ended meanwhile
        for dead in started:
            _replace_job(redis, dead)  # no pass may take a dead process's started job for live
        if job_id not in started and job_state(redis, job_id) in LIVE:
            continue  # the next attempt is already waiting for a worker
        _replace_job(redis, job_id)
        q.enqueue_finalize(redis, settings, export_id, attempt + 1)
        metrics.count(redis, settings, "spillway_recoveries", cause="finalizer_died")
        with log_context(export=export_id):
            log.warning("the process running this export's finalizer died (its liveness lock is free); enqueued again")
        recovered += 1
    return recovered


class LostJobs:
    """Which jobs of a queue are lost: RQ has them in no live state, or a worker popped them
    from the queue and never marked them started, seen so at two passes in a row (``popped``
    carries the first sighting from one pass to the next; :meth:`carry` ends the pass). A live
    worker marks a popped job started within milliseconds; one that died in between leaves it
    queued, in no queue, for ever."""

    def __init__(self, redis: Redis, queue: Queue, popped: set[str] | None) -> None:
        self.redis, self.queue, self.popped, self.seen = redis, queue, popped, set[str]()

    def __call__(self, job_id: str, stale_started: bool = False) -> bool:
        """Whether the job is lost; with ``stale_started``, one RQ calls started is judged as a
        popped one (its claim's lease is over: the process is frozen, or dead)."""
        state = job_state(self.redis, job_id)
        if state not in LIVE:
            return True
        stale = stale_started and state == "started"
        if self.popped is None or not (stale or _popped(self.queue, job_id, state)):
            return False  # live: waiting in its queue, or started
        if job_id in self.popped:
            return True
        self.seen.add(job_id)
        return False

    def carry(self) -> None:
        """Keep this pass's first sightings for the next pass."""
        if self.popped is not None:
            self.popped.clear()
            self.popped.update(self.seen)


def recover_control_jobs(conn: Conn, redis: Redis, settings: Settings, popped: set[str] | None = None) -> int:
    """Re-enqueue lost planners and finalizers; refill windows; admit waiting exports.

    With ``popped`` (the jobs the previous pass saw popped from the control queue and not
    started, carried from pass to pass), a planner or finalizer job seen so at two passes in a
    row is lost too (:class:`LostJobs`). A started planner or finalizer whose process died is
    the quick step's (:func:`recover_dead_planners`, :func:`recover_dead_finalizers`).
    """
    count = 0
    lost = LostJobs(redis, q.control_queue(redis, settings), popped)
    unfinished = exports_repo.unfinished_exports(conn)
    for export in unfinished:
        if not _needs_planner(export):
            continue
        job_id = q.plan_job_id(export.id)
        if lost(job_id):
            _replace_job(redis, job_id)
            q.enqueue_plan(redis, settings, export.id)
            metrics.count(redis, settings, "spillway_recoveries", cause="planner_lost")
            with log_context(export=export.id):
                log.warning("planner lost; enqueued again")
            count += 1
    for export_id, attempt, leased in exports_repo.finalizers(conn):
        if leased:
            continue  # a finalizer at work (a dead one is the quick step's)
        # An earlier finalize job still to run (an RQ retry: its backoff, its limit) holds the
        # export back; one RQ calls started while the lease is over (a frozen process; a dead
        # one is the quick step's) only until the next pass, and the lease's take-over runs.
        earlier = [q.finalize_job_id(export_id, n) for n in range(1, attempt + 1)]
        if not all([lost(job_id, stale_started=True) for job_id in earlier]):  # every one: sightings carry
            continue
        for job_id in earlier:
            if job_state(redis, job_id) == "queued":
                _replace_job(redis, job_id)  # popped by a worker that died: gone, it is lost at every pass
        job_id = q.finalize_job_id(export_id, attempt + 1)
        if lost(job_id):
            _replace_job(redis, job_id)
            q.enqueue_finalize(redis, settings, export_id, attempt + 1)
            metrics.count(redis, settings, "spillway_recoveries", cause="finalizer_lost")
            with log_context(export=export_id):
                log.warning("finalizer lost; enqueued again")
            count += 1
    for export in unfinished:
        if export.status == ExportStatus.RUNNING:
            count += len(fill_window(conn, redis, settings, export.id))
    for owner in sorted({e.owner for e in unfinished if e.status == ExportStatus.QUEUED and e.admitted_at is None}):
        count += len(admit(conn, redis, settings, owner))
    lost.carry()
    return count


def dispatch_webhooks(conn: Conn, redis: Redis, settings: Settings, popped: set[str] | None = None) -> int:
    """Create deliveries a process died before creating, and enqueue every attempt that is due
    (first attempts whose job was lost, and retries whose delay has passed).

    With ``popped`` (carried from pass to pass), an attempt's job popped from the webhook queue
    by a worker that died before marking it started is lost too, at the second pass that sees
    it so (:class:`LostJobs`); it was never delivered otherwise.
    """
    created = webhooks.schedule_missed(conn)
    sent = 0
    lost = LostJobs(redis, Queue(settings.queue_webhooks, connection=redis), popped)
    for delivery_id, attempt in webhooks.due(conn, settings.webhook_attempts):
        job_id = q.webhook_job_id(delivery_id, attempt)
        if not lost(job_id):
            continue
        _replace_job(redis, job_id)
        q.enqueue_webhook(redis, settings, delivery_id, attempt)
        sent += 1
    lost.carry()
    return created + sent


def expire_exports(conn: Conn, settings: Settings, limit: int = EXPIRE_BATCH) -> int:
    """Delete the objects of completed exports past ``expires_at``; mark them expired."""
    expiring = exports_repo.expiring_exports(conn, limit)
    for export in expiring:
        if export.object_key:
            s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=export.object_key)
        exports_repo.mark_expired(conn, export.id)
    return len(expiring)


def abort_orphan_uploads(conn: Conn, settings: Settings) -> int:
    """Abort multipart uploads under our prefix that no queued or running export owns.

    An upload is live when its key's export is queued (its planner may be between creating
    the upload and recording it) or running with exactly this upload id. Uploads younger
    than the grace period are left alone too (S3's ``Initiated``; moto reports a fixed date,
    so the key rule is what protects a planner in flight).
    """
    unfinished = exports_repo.unfinished_exports(conn)
    queued = {e.id for e in unfinished if e.status == ExportStatus.QUEUED}
    running = {e.upload_id for e in unfinished if e.status == ExportStatus.RUNNING}
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.janitor_grace_s)
    aborted = 0
    paginator = s3_client(settings).get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix=settings.s3_prefix):
        for upload in page.get("Uploads", []):
            if (
                upload["UploadId"] in running
                or export_id_of_key(settings, upload["Key"]) in queued
                or upload["Initiated"] > cutoff
            ):
                continue
            abort_upload(settings, upload["Key"], upload["UploadId"])
            log.warning("aborted orphan multipart upload %s of %s", upload["UploadId"], upload["Key"])
            aborted += 1
    return aborted


def delete_orphan_staged(conn: Conn, settings: Settings) -> int:
    """Delete staged chunk objects (:mod:`worker.assembly`) that no queued or running export
    owns and that are older than the grace period — left by a finalizer whose delete failed,
    or written by a superseded attempt after its export ended; return how many."""
    live = {e.id for e in exports_repo.unfinished_exports(conn)}
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.janitor_grace_s)
    client = s3_client(settings)
    root = staged_root(settings)
    deleted = 0
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=root, Delimiter="/")
    for common in (c for page in pages for c in page.get("CommonPrefixes", [])):
        try:
            export_id = uuid.UUID(common["Prefix"][len(root) :].rstrip("/"))
        except ValueError:
            continue
        if export_id in live:
            continue
        objects = client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=common["Prefix"]).get("Contents", [])
        if objects and all(o["LastModified"] < cutoff for o in objects):
            deleted += delete_staged(settings, export_id)
            with log_context(export=export_id):
                log.warning("deleted %d staged chunk objects of a finished export", len(objects))
    return deleted


def identity() -> str:
    """This reconciler's name in the locks it takes: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def reconcile(
    settings: Settings,
    redis: Redis,
    holder: str | None = None,
    missing: MissingJobs | None = None,
    session: StateSession | None = None,
    popped: Popped | None = None,
) -> dict[str, int]:
    """One pass of every step; return what each did.

    Args:
        holder: the name this pass takes RQ's scheduler locks under (default :func:`identity`).
        missing: jobs seen missing by earlier passes (see :func:`recover_chunks`).
        popped: control and webhook jobs seen popped and not started by the last pass (see
            :class:`LostJobs`).
        session: the state connection to run on (default: one of its own, for this pass).
    """
    # Redis only, and first: due retries move even while Postgres is away, and the steps below
    # see them queued.
    try:
        scheduled = enqueue_due_jobs(redis, settings, f"spillway-reconciler:{holder or identity()}")
    except Exception:  # noqa: BLE001 - never let the scheduler step keep chunks from being recovered
        log.exception("moving due jobs failed; the other steps run anyway")
        scheduled = 0

    def steps(conn: psycopg.Connection[Any]) -> dict[str, int]:
        return {
            "scheduled": scheduled,
            "chunks": recover_chunks(conn, redis, settings, missing=missing),
            "control": recover_control_jobs(conn, redis, settings, popped.control if popped else None),
            "webhooks": dispatch_webhooks(conn, redis, settings, popped.webhooks if popped else None),
            "expired": expire_exports(conn, settings),
            "orphan_uploads": abort_orphan_uploads(conn, settings),
            "orphan_staged": delete_orphan_staged(conn, settings),
        }

    if session is not None:
        return session.run(steps)
    with StateSession(settings) as own:
        return own.run(steps)


class StateSession:
    """The reconciler's state connection, kept from pass to pass and opened again when it breaks.

    A connection per pass and per quick step made PostgreSQL start a backend more than once a
    second, idle or not (each about 3 ms of its CPU). A step that finds the connection broken
    (PostgreSQL restarted, the backend terminated) runs once more on a new one at once, so a
    restart costs no pass; every step can run again (they are the reconciler's idempotent
    passes). After any other database error the session is closed too, so nothing a failed
    step left (a prepared statement of a schema a migration changed) outlives it.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection[Any] | None = None

    def run(self, step: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``step(conn)`` on the open connection, or on a new one if it broke under the first try."""
        for fresh in (False, True):
            if self._conn is None or self._conn.closed:
                self._conn, fresh = connect_state(self._settings, state_label("reconciler")), True
            try:
                return step(self._conn)
            except psycopg.Error as exc:
                broken = isinstance(exc, psycopg.OperationalError) and self._conn.broken
                self.close()  # after any database error the next step starts on a new session
                if fresh or not broken:
                    raise
        raise AssertionError("unreachable: the second try runs on a fresh connection")

    def close(self) -> None:
        """Close the connection, if one is open."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> StateSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Popped:
    """The jobs the last pass saw popped from their queue and not started (:class:`LostJobs`), by queue."""

    control: set[str] = field(default_factory=set)
    webhooks: set[str] = field(default_factory=set)


@dataclass
class Sightings:
    """What the quick step saw at its last call, for the next one to confirm."""

    attempts: set[tuple[Any, int, int]] = field(default_factory=set)  # chunks seen without a live process once
    planners: set[tuple[uuid.UUID, int]] = field(default_factory=set)  # planners seen without a live process once
    finalizers: set[tuple[uuid.UUID, int]] = field(default_factory=set)  # finalizers seen without a live process once
    unclaimed: set[tuple[uuid.UUID, int]] = field(default_factory=set)  # pending chunks whose taken job had no process
    missing: MissingJobs = field(default_factory=dict)  # pending chunks whose job was not in Redis, since when
    popped: Popped = field(default_factory=Popped)  # jobs the last pass saw popped and not started


def recover_dead_attempts(settings: Settings, redis: Redis, seen: Sightings, session: StateSession) -> int:
    """The quick step, every ``SPILLWAY_LIVENESS_INTERVAL_S``: re-run at once the chunks,
    planners and finalizers whose process died (their liveness lock free at two checks in a row,
    :mod:`shared.liveness`), and the pending chunks whose job has been missing from Redis for
    :data:`LOST_JOB_GRACE_S` (a process killed between marking a chunk enqueued and enqueuing
    it); return how many."""

    def step(conn: psycopg.Connection[Any]) -> int:
        dead = expire_dead_attempts(conn, seen.attempts, settings.lease_s)
        for export_id, part_number in dead:
            with log_context(export=export_id, part=part_number):
                log.warning("the process running this chunk died (its liveness lock is free)")
        control = recover_dead_planners(conn, redis, settings, seen.planners)
        control += recover_dead_finalizers(conn, redis, settings, seen.finalizers)
        return control + recover_chunks(
            conn, redis, settings, died=dead, missing=seen.missing, unclaimed=seen.unclaimed, lease_s=settings.lease_s
        )

    return session.run(step)


def hold_lock(redis: Redis, key: str, holder: str, ttl_ms: int) -> bool:
    """Take the reconciler lock, or extend it when ``holder`` already has it (atomically)."""
    return bool(redis.eval(_TAKE_OR_EXTEND, 1, key, holder, ttl_ms))


def main(argv: list[str] | None = None) -> None:
    """Run passes until SIGTERM (or one pass with ``--once``)."""
    parser = argparse.ArgumentParser(description="Spillway reconciler and janitor.")
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    try:
        datasets.load(settings)  # a bad datasets file stops the reconciler at start, like the API and workers
    except datasets.DatasetsError as exc:
        raise SystemExit(f"spillway reconciler: not starting: {exc}") from None
    except psycopg.OperationalError as exc:
        raise SystemExit(f"spillway reconciler: not starting: the source database is unreachable: {exc}") from None
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    me = identity()
    lock = f"{settings.queue_prefix}:reconciler"
    interval = settings.reconcile_interval_s
    seen = Sightings()
    session = StateSession(settings)
    checked = time.monotonic()  # the last quick step: kept across passes, however short the interval
    while not stopping["now"]:
        started = time.monotonic()
        try:
            # One reconciler at a time does the work; another takes over when this one stops.
            if hold_lock(redis, lock, me, int(interval * 1000 * LOCK_TTL_INTERVALS)):
                missing, popped = (None, None) if args.once else (seen.missing, seen.popped)  # --once: nothing carried
                done = reconcile(settings, redis, me, missing, session, popped)
                if any(done.values()):
                    log.info("reconciled: %s", done)
        except Exception:  # Redis, Postgres or S3 away: log and try again next interval
            log.exception("reconcile pass failed")
        if args.once:
            break
        while not stopping["now"] and time.monotonic() - started < interval:
            time.sleep(0.1)
            if time.monotonic() - checked >= settings.liveness_interval_s:
                checked = time.monotonic()
                try:
                    if redis.get(lock) == me.encode():  # the lock holder does the quick step too
                        recover_dead_attempts(settings, redis, seen, session)
                except Exception:
                    log.exception("liveness check failed")
    session.close()


if __name__ == "__main__":
    main()
