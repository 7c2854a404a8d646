"""gunicorn settings for the API (``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app``).

Threads, not only processes: inline exports stream for a few seconds, status polls are
short; gthread workers serve both without blocking one another. ``SPILLWAY_API_PROCESSES``
(2) processes of ``SPILLWAY_API_THREADS`` (4) threads gave the best status-poll tail latency
on the 2-core machine among 2x2, 2x4, 2x8, 3x2 and 4x4 (see the README's benchmark section).
"""

import os
import shutil
import tempfile
from pathlib import Path

from shared.logs import logging_config
from shared.settings import load_settings

_settings = load_settings()

# prometheus-client's multiprocess mode (api/metrics.py): every gunicorn process writes its
# counters here and a scrape of any one adds them up. One directory per server (its port),
# set before the app is imported in the processes, emptied when the server starts.
_metrics_dir = Path(
    os.environ.get("PROMETHEUS_MULTIPROC_DIR") or Path(tempfile.gettempdir()) / f"spillway-metrics-{_settings.api_port}"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_processes
worker_class = "gthread"
threads = _settings.api_threads
timeout = 120
graceful_timeout = 10
keepalive = 5
# To stderr (the container's log, or .data/logs/web.log, 0600 in a 0700 directory, under `make up`).
# Its request lines hold no secret: keys travel in a header gunicorn's access format does not
# write, and presigned URLs go to S3, not here.
accesslog = "-"
errorlog = "-"
# Both through the one configuration of every Spillway process (shared/logs.py): SPILLWAY_LOG_FORMAT
# text or json, each line with its request id (the access line reads it from X-Request-Id).
logconfig_dict = logging_config(_settings.log_format, _settings.log_level.upper())


def on_starting(server):
    """Start from zero: files of an earlier server would be added to this one's counters."""
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    _metrics_dir.mkdir(parents=True, mode=0o700)


def child_exit(server, worker):
    """A process that exited keeps its counters in the sum; its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
