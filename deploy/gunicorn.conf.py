"""gunicorn settings for the API (``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app``).

Threads, not only processes: inline exports stream for a few seconds, status polls are
short; gthread workers serve both without blocking one another. ``SPILLWAY_API_PROCESSES``
(2) processes of ``SPILLWAY_API_THREADS`` (4) threads gave the best status-poll tail latency
on the 2-core machine among 2x2, 2x4, 2x8, 3x2 and 4x4 (see the README's benchmark section).
"""

from shared.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_processes
worker_class = "gthread"
threads = _settings.api_threads
timeout = 120
graceful_timeout = 10
keepalive = 5
# To stdout: the container's log, or .data/logs/web.log (0600, in a 0700 directory) under `make up`.
# Its request lines hold no secret: keys travel in a header, and presigned URLs go to S3, not here.
accesslog = "-"
errorlog = "-"
