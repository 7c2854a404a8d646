"""gunicorn settings for rq-dashboard (the Procfile's ``dashboard``)."""

from shared.logs import logging_config
from shared.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.dashboard_port}"
workers = 1
threads = 4
worker_class = "gthread"
accesslog = "-"
errorlog = "-"
logconfig_dict = logging_config(_settings.log_format, _settings.log_level.upper())  # as every process logs
