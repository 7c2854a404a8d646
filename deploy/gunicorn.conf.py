"""gunicorn settings for the API (``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app``).

Threads, not only processes: inline exports stream for a few seconds, status polls are
short; gthread workers serve both without blocking one another. Two processes of four
threads gave the best status-poll tail latency on the 2-core machine among 2x2, 2x4, 2x8,
3x2 and 4x4 (see the README's benchmark section).
"""

from shared.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = 2
worker_class = "gthread"
threads = 4
timeout = 120
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
