"""Worker entry point: ``python -m worker`` runs one RQ worker with Spillway's settings.

It listens to the control queue first (plan, finalize, cleanup: short jobs that start or
finish an export) and then to the chunk queue, so a new export starts while chunks of others
run. On SIGTERM it finishes or hands back its current chunk within about one block.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket

from redis import Redis
from rq import Queue, Worker

from shared.settings import Settings, load_settings


class SpillwayWorker(Worker):
    """RQ's forking worker; a warm shutdown also asks the running chunk to hand back."""

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            try:
                os.kill(self.horse_pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass


def preload(settings: Settings) -> None:
    """Import the job code and build the S3 client once, before work horses fork.

    Each job runs in a forked horse; importing boto3 and psycopg there would cost about a
    second per chunk. The client holds no connection yet, so no socket is shared.
    """
    import worker.tasks  # noqa: F401  (the import is the point)
    from shared.storage import s3_client
    from worker.chunks import listen_for_shutdown

    s3_client(settings)
    listen_for_shutdown()


def main(argv: list[str] | None = None) -> None:
    """Run a worker until SIGTERM (warm shutdown) or, with ``--burst``, until the queues are empty."""
    parser = argparse.ArgumentParser(description="Run a Spillway RQ worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: host.pid)")
    args = parser.parse_args(argv)

    settings = load_settings()
    preload(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    connection = Redis.from_url(settings.redis_url)
    queues = [Queue(name, connection=connection) for name in (settings.queue_control, settings.queue_chunks)]
    worker = SpillwayWorker(queues, connection=connection, name=args.name or f"{socket.gethostname()}.{os.getpid()}",
                            job_monitoring_interval=5)
    worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")


if __name__ == "__main__":
    main()
