"""The RQ jobs of an export as tests and the benchmark read them: what they returned and
what they reported in their meta."""

from __future__ import annotations

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from shared.queue import chunk_job_id
from tests.support.waiting import wait_for


def chunk_jobs(redis: Redis, export_id: str, parts: int) -> list[Job]:
    """The first jobs of chunks 1 to ``parts`` that Redis still has (not yet enqueued: left out)."""
    jobs = []
    for n in range(1, parts + 1):
        try:
            jobs.append(Job.fetch(chunk_job_id(export_id, n), connection=redis))
        except NoSuchJobError:
            continue
    return jobs


def reported_peak_rss_mb(jobs: list[Job]) -> float:
    """The largest peak RSS the jobs' work horses reported (``peak_rss_kb`` in their meta), in MB."""
    return max([job.meta.get("peak_rss_kb", 0) for job in jobs] or [0]) / 1024


def job_result(redis: Redis, job_id: str, timeout: float = 60) -> str:
    """Wait until a job has finished or failed; return what it returned, or its exception text."""

    def ended():
        job = Job.fetch(job_id, connection=redis)
        return job.get_status() in ("finished", "failed") and job

    job = wait_for(ended, timeout=timeout, what=f"job {job_id} to end")
    latest = job.latest_result()
    return str(job.return_value() or (latest.exc_string if latest else None))
