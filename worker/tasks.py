"""RQ job functions: thin wrappers that take ids, delegate, and decide what a failure means.

Invariant: a permanent failure, or a transient one on the last retry, fails the export and
aborts its multipart upload; a failure of an export that already ended (cancelled, say) is
not retried; any other failure is re-raised for RQ to retry with backoff.
"""

from __future__ import annotations

import logging
import resource
import uuid
from collections.abc import Callable

from rq import get_current_job

from shared import exports_repo as repo
from shared.db import connect_state
from shared.queue import admit, stop_running_work
from worker import runtime
from worker.chunks import export_chunk as run_chunk
from worker.cleanup import cleanup
from worker.failures import describe, is_permanent
from worker.finalizer import finalize
from worker.planner import plan
from worker.uploads import abort_upload

log = logging.getLogger(__name__)


def fail_export(export_id: uuid.UUID, error: str) -> None:
    """Mark the export failed, stop its other chunks and queries, abort its upload, admit the
    owner's next export: after a failure, as after a cancel, nothing of the export runs on."""
    settings = runtime.settings()
    with connect_state(settings, f"spillway:state:{export_id}:fail") as state:
        row = repo.fail_export(state, export_id, error)
        if row is not None:
            admit(state, runtime.redis(), settings, row["owner"])
    if row is None:
        return
    stop_running_work(runtime.redis(), settings, export_id)
    abort_upload(settings, row["object_key"], row["upload_id"])
    log.error("export %s failed: %s", export_id, error)


def _export_ended(export_id: uuid.UUID) -> bool:
    with connect_state(runtime.settings(), f"spillway:state:{export_id}:check") as state:
        export = repo.get_export(state, export_id)
    return export is None or export["status"] in repo.TERMINAL


def _guarded(export_id: str, step: str, work: Callable[[uuid.UUID], str]) -> str:
    export_uuid = uuid.UUID(export_id)
    try:
        return work(export_uuid)
    except Exception as exc:
        job = get_current_job()
        if _export_ended(export_uuid):
            log.info("export %s: %s stopped after the export ended (%s)", export_uuid, step, describe(exc))
            return f"stopped: the export ended ({describe(exc)})"
        if is_permanent(exc) or job is None or not job.retries_left:
            fail_export(export_uuid, f"{step}: {describe(exc)}")
            if job is not None:
                job.retries_left = 0  # nothing left to retry: the export has failed
        raise


def plan_export(export_id: str) -> str:
    """Plan an export and enqueue its first chunks."""
    return _guarded(export_id, "plan", lambda e: plan(runtime.settings(), runtime.redis(), e))


def export_chunk(export_id: str, part_number: int) -> str:
    """Export one chunk into its multipart part; record the process's peak RSS in the job's meta."""
    job = get_current_job()
    meta: dict = {}
    try:
        return _guarded(export_id, f"part {part_number}", lambda e: run_chunk(
            runtime.settings(), runtime.redis(), e, part_number, runtime.worker_identity(), meta))
    finally:
        if job is not None:
            job.meta.update(meta, peak_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            job.save_meta()


def finalize_export(export_id: str) -> str:
    """Complete the multipart upload and mark the export completed."""
    return _guarded(export_id, "finalize", lambda e: finalize(runtime.settings(), runtime.redis(), e))


def cleanup_export(export_id: str) -> str:
    """Abort the multipart upload of a cancelled export and check nothing is left."""
    return cleanup(runtime.settings(), uuid.UUID(export_id))
