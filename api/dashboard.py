"""rq-dashboard for operators, behind HTTP Basic authentication (never open).

Run as its own process: ``gunicorn -c deploy/gunicorn.conf.py "api.dashboard:create_dashboard()"``
(the Procfile's ``dashboard``). It refuses to start without ``SPILLWAY_DASHBOARD_PASSWORD``.
Job ids and descriptions name their export (``export-<id>-part-00007``), so an operator can
go from a job to ``POST /exports/<id>/cancel``.
"""

from __future__ import annotations

import hmac

import rq_dashboard
from flask import Flask, Response, request
from rq_dashboard.web import setup_rq_connection

from shared.settings import PREFIX, Settings, SettingsError, load_settings


def _authorized(settings: Settings) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode(), settings.dashboard_user.encode())
    password_ok = hmac.compare_digest((auth.password or "").encode(), settings.dashboard_password.encode())
    return user_ok and password_ok


def create_dashboard(settings: Settings | None = None) -> Flask:
    """Build the dashboard app.

    Raises:
        SettingsError: no dashboard password is configured.
    """
    settings = settings or load_settings()
    if not settings.dashboard_password:
        raise SettingsError(f"{PREFIX}DASHBOARD_PASSWORD must be set: rq-dashboard is never served without it")
    app = Flask(__name__)
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    app.config["RQ_DASHBOARD_POLL_INTERVAL"] = 2500
    setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="")

    @app.before_request
    def require_login():
        if not _authorized(settings):
            return Response(
                "authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="spillway rq-dashboard"'}
            )
        return None

    return app
