"""Moving exports along: admitting them, feeding their chunk windows, and ending them.

Invariant: Postgres changes first, Redis follows. Each function writes the state through
the repositories (a committed transaction) and only then enqueues or signals, so a job never
runs ahead of the state it relies on; if Redis is away, the reconciler redoes the Redis half
from Postgres. There is one way to end an export — :func:`end_export` — whether it is
cancelled by a client or failed by a worker.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import psycopg
from redis import Redis
from redis.exceptions import RedisError

from shared import chunks_repo, exports_repo, metrics, webhooks
from shared.db import cancel_export_queries
from shared.models import Export, ExportStatus
from shared.queue import CANCEL_FLAG_TTL_S, cancel_key, enqueue_chunks, enqueue_cleanup, enqueue_plan, enqueue_webhook
from shared.settings import Settings

Conn = psycopg.Connection[Any]
log = logging.getLogger(__name__)


def admit(conn: Conn, redis: Redis, settings: Settings, owner: str) -> list[uuid.UUID]:
    """Admit the owner's waiting exports up to the per-owner cap and enqueue their planners."""
    admitted = exports_repo.admit_waiting(conn, owner, settings.max_running_per_owner)
    for export_id in admitted:
        enqueue_plan(redis, settings, export_id)
    return admitted


def fill_window(conn: Conn, redis: Redis, settings: Settings, export_id: uuid.UUID) -> list[int]:
    """Enqueue the export's next chunks, up to the per-export cap of chunks in flight."""
    parts = chunks_repo.next_chunks(conn, export_id, settings.max_chunks_in_flight)
    enqueue_chunks(redis, settings, export_id, parts)
    return parts


def stop_running_work(redis: Redis, settings: Settings, export_id: uuid.UUID | str) -> None:
    """Tell an ended export's running chunks to stop (a flag they check at every block) and
    cancel its queries now."""
    redis.set(cancel_key(settings, export_id), repr(time.time()), ex=CANCEL_FLAG_TTL_S)
    cancel_export_queries(settings, export_id)


def announce_end(conn: Conn, redis: Redis, settings: Settings, ended: Export) -> None:
    """What follows any end of an export: count it, and start its webhook delivery if it asked for one
    (the reconciler creates and sends a delivery this process could not)."""
    metrics.count(redis, settings, "spillway_exports_finished", status=ended.status.value)
    if ended.notify_url is None:
        return
    try:  # last and never fatal: the export has ended whatever happens here
        delivery = webhooks.schedule(conn, ended)
        if delivery is not None:
            enqueue_webhook(redis, settings, delivery, 1)
    except (psycopg.Error, RedisError) as exc:
        log.warning("export %s: its webhook delivery is not started (%s); the reconciler will", ended.id, exc)


def end_export(
    conn: Conn, redis: Redis, settings: Settings, export_id: uuid.UUID, status: ExportStatus, error: str | None = None
) -> Export | None:
    """End a queued or running export as ``cancelled`` or ``failed``, and stop all its work.

    In order: the status change (its unfinished chunks are cancelled with it, fencing out
    their writes); the cancel flag and ``pg_cancel_backend`` of its queries; a cleanup job
    that aborts its multipart upload; the admission of its owner's next export.

    Returns:
        The ended export, or None when it had already finished (nothing was done).
    """
    ended = exports_repo.end_export(conn, export_id, status, error)
    if ended is None:
        return None
    stop_running_work(redis, settings, export_id)
    if ended.upload_id:
        enqueue_cleanup(redis, settings, export_id)
    admit(conn, redis, settings, ended.owner)
    announce_end(conn, redis, settings, ended)
    return ended
