"""RQ job functions: thin wrappers that take ids, delegate, and decide what a failure means.

Invariant: a permanent failure, or a transient one on the last retry, ends the export as
failed through :func:`shared.lifecycle.end_export` — the same way a cancel ends it: its other
chunks and queries stop, its upload is aborted by a cleanup job, its owner's next export is
admitted. A failure of an export that already ended is not retried; any other failure is
re-raised for RQ to retry with backoff. Every log line of a job names its export and part.
"""

from __future__ import annotations

import logging
import resource
import uuid
from collections.abc import Callable
from typing import Any

from rq import get_current_job

from shared import exports_repo, metrics
from shared.db import connect_state, state_label
from shared.lifecycle import end_export
from shared.logs import log_context
from shared.models import ExportStatus
from worker import runtime
from worker.chunks import run_chunk
from worker.cleanup import cleanup
from worker.failures import describe, is_permanent
from worker.finalizer import finalize
from worker.planner import plan
from worker.webhooks import deliver

log = logging.getLogger(__name__)


def _fail(export_id: uuid.UUID, error: str) -> None:
    settings = runtime.settings()
    with connect_state(settings, state_label("fail", export_id)) as state:
        ended = end_export(state, runtime.redis(), settings, export_id, ExportStatus.FAILED, error)
    if ended is not None:
        log.error("export failed: %s", error)


def _export_ended(export_id: uuid.UUID) -> bool:
    with connect_state(runtime.settings(), state_label("check", export_id)) as state:
        export = exports_repo.get_export(state, export_id)
    return export is None or export.status.finished


def _guarded(export_id: uuid.UUID, step: str, work: Callable[[], str]) -> str:
    try:
        return work()
    except Exception as exc:
        job = get_current_job()
        if _export_ended(export_id):
            log.info("%s stopped after the export ended (%s)", step, describe(exc))
            return f"stopped: the export ended ({describe(exc)})"
        if is_permanent(exc) or job is None or not job.retries_left:
            _fail(export_id, f"{step}: {describe(exc)}")
            if job is not None:
                job.retries_left = 0  # nothing left to retry: the export has failed
        else:
            metrics.count(runtime.redis(), runtime.settings(), "spillway_retries", step=step.split()[0])
        raise


def plan_job(export_id: str) -> str:
    """Plan an export and enqueue its first chunks."""
    export_uuid = uuid.UUID(export_id)
    with log_context(export=export_uuid, part="plan"):
        return _guarded(export_uuid, "plan", lambda: plan(runtime.settings(), runtime.redis(), export_uuid))


def chunk_job(export_id: str, part_number: int) -> str:
    """Export one chunk into its multipart part; record the process's peak RSS in the job's meta."""
    export_uuid = uuid.UUID(export_id)
    job = get_current_job()
    meta: dict[str, Any] = {}
    with log_context(export=export_uuid, part=part_number):
        try:
            return _guarded(
                export_uuid,
                f"part {part_number}",
                lambda: run_chunk(
                    runtime.settings(), runtime.redis(), export_uuid, part_number, runtime.worker_identity(), meta
                ),
            )
        finally:
            if job is not None:
                job.meta.update(meta, peak_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
                job.save_meta()


def finalize_job(export_id: str) -> str:
    """Complete the multipart upload and mark the export completed."""
    export_uuid = uuid.UUID(export_id)
    with log_context(export=export_uuid, part="finalize"):
        return _guarded(export_uuid, "finalize", lambda: finalize(runtime.settings(), runtime.redis(), export_uuid))


def cleanup_job(export_id: str) -> str:
    """Abort the multipart upload of an ended export and check nothing is left."""
    export_uuid = uuid.UUID(export_id)
    with log_context(export=export_uuid, part="cleanup"):
        return cleanup(runtime.settings(), export_uuid)


def webhook_job(delivery_id: str, attempt: int) -> str:
    """One attempt of a webhook delivery (worker/webhooks.py); its retries are scheduled in Postgres."""
    with log_context():  # the delivery binds its export's fields once it has read them
        return deliver(runtime.settings(), runtime.redis(), uuid.UUID(delivery_id), attempt)
