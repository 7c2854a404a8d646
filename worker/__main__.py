"""Worker entry point: ``python -m worker`` runs one RQ worker with Spillway's settings.

It listens to the control queue first (plan, finalize, cleanup: short jobs that start or
finish an export) and then to the chunk queue, so a new export starts while chunks of others
run. On SIGTERM it finishes or hands back its current chunk within about one block. If Redis
goes away, the worker waits and starts its loop again instead of exiting.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import socket
import time

import psycopg
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker
from rq.job import Job

from shared.datasets import DatasetsError
from shared.logs import configure_logging, log_context
from shared.settings import Settings, load_settings

log = logging.getLogger("spillway.worker")
_stop = {"requested": False}
RESTART_DELAYS_S = (1, 2, 5, 10)  # waits before starting the worker loop again after Redis errors


def job_log_fields(job: Job) -> dict[str, object]:
    """The export and part a job works on, for RQ's own lines about it (our jobs take the
    export's id first, and a chunk job its part number second)."""
    try:  # reading the args unpickles the job's data: a job that cannot be read is RQ's to fail
        name = (job.func_name or "").rsplit(".", 1)[-1]
        if name == "chunk_job" and len(job.args) >= 2:
            return {"export": job.args[0], "part": job.args[1]}
        if name in ("plan_job", "finalize_job", "cleanup_job") and job.args:
            return {"export": job.args[0], "part": name.removesuffix("_job")}
    except Exception:  # noqa: BLE001 - log fields are never worth losing a job over
        log.warning("job %s: its arguments could not be read for the log context", job.id)
    return {}


SHUTDOWN_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class SpillwayWorker(Worker):
    """RQ's forking worker; a warm shutdown also asks the running chunk to hand back."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job with its export in every line, the work horse's (forked inside) included."""
        with log_context(**job_log_fields(job)):
            super().execute_job(job, queue)

    def subscribe(self) -> None:
        """RQ's pubsub thread, started with SIGTERM and SIGINT blocked in it: the kernel then
        hands a shutdown signal sent to the worker to its main thread, whose handler runs at
        once. Taken by the pubsub thread (when every thread was stopped, say), a SIGTERM waited
        until the main thread came back from waiting for its horse: 4.9 s, measured."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
        try:
            super().subscribe()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        _stop["requested"] = True
        if self.horse_pid:
            try:
                os.kill(self.horse_pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass


def preload(settings: Settings) -> None:
    """Import the job code and build the S3 client once, before work horses fork.

    Each job runs in a forked horse; importing boto3 and psycopg there would cost about a
    second per chunk. The client holds no connection yet, so no socket is shared. The
    datasets file is checked against the catalog here, so a bad one stops the worker at
    start (horses inherit the registry).
    """
    import worker.tasks  # noqa: F401  (the import is the point)
    from shared.datasets import load
    from shared.storage import s3_client
    from worker.chunks import listen_for_shutdown

    load(settings)
    s3_client(settings)
    listen_for_shutdown()


def main(argv: list[str] | None = None) -> None:
    """Run a worker until SIGTERM (warm shutdown) or, with ``--burst``, until the queues are empty."""
    parser = argparse.ArgumentParser(description="Run a Spillway RQ worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: host.pid)")
    args = parser.parse_args(argv)

    settings = load_settings()
    try:
        preload(settings)
    except DatasetsError as exc:
        raise SystemExit(f"spillway worker: not starting: {exc}") from None
    except psycopg.OperationalError as exc:
        raise SystemExit(f"spillway worker: not starting: the source database is unreachable: {exc}") from None
    configure_logging(settings)
    connection = Redis.from_url(settings.redis_url)
    names = (settings.queue_control, settings.queue_chunks, settings.queue_webhooks)
    queues = [Queue(name, connection=connection) for name in names]
    base_name = args.name or f"{socket.gethostname()}.{os.getpid()}"
    # RQ's loop ends (it does not retry) when Redis fails outside a dequeue, e.g. while Redis
    # restarts; run it again, under a new name, until a stop is requested.
    for incarnation in itertools.count():
        worker = SpillwayWorker(
            queues,
            connection=connection,
            job_monitoring_interval=5,
            name=base_name if incarnation == 0 else f"{base_name}.{incarnation}",
        )
        try:
            worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level.upper())
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.error("worker loop stopped by a Redis error: %s", exc)
        if _stop["requested"] or args.burst:
            return
        signal.signal(signal.SIGTERM, lambda *_: _stop.update(requested=True))
        signal.signal(signal.SIGINT, lambda *_: _stop.update(requested=True))
        delay = RESTART_DELAYS_S[min(incarnation, len(RESTART_DELAYS_S) - 1)]
        log.warning("worker loop ended without a stop request (Redis away?); starting again in %d s", delay)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not _stop["requested"]:
            time.sleep(0.1)
        if _stop["requested"]:
            return


if __name__ == "__main__":
    main()
