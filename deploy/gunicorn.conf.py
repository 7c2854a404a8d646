"""gunicorn settings for the API (``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app``).

Threads, not only processes: inline exports stream for a few seconds, status polls are
short; gthread workers serve both without blocking one another.
"""

from shared.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = 2
worker_class = "gthread"
threads = 8
timeout = 120
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
