"""rq-dashboard for operators, behind HTTP Basic authentication (never open).

Run as its own process: ``gunicorn -c deploy/dashboard.conf.py "api.dashboard:create_dashboard()"``
(the Procfile's ``dashboard``). It refuses to start without ``SPILLWAY_DASHBOARD_PASSWORD``.
Job ids and descriptions name their export (``export-<id>-part-00007``), so an operator can
go from a job to ``POST /exports/<id>/cancel``.

Invariants:

- Every answer (401, 403, pages, JSON, static files, errors) carries :data:`SECURITY_HEADERS`:
  the dashboard can never be framed (clickjacking) nor sniffed into another content type.
- A state change is never made by a cross-site request. The state-changing routes are the
  rq-dashboard views in :data:`STATE_CHANGING_ENDPOINTS` (whatever their method: ``requeue_all``
  answers GET too), plus any request whose method is not GET/HEAD/OPTIONS. Such a request is
  served only when it is same-origin, judged by the first of these headers it carries:
  ``Sec-Fetch-Site`` (``same-origin`` or ``none``, i.e. typed or bookmarked), else ``Origin``
  (equal to this request's ``scheme://host[:port]``), else ``Referer`` (same origin); otherwise
  it answers 403 before rq-dashboard runs. Read-only pages and JSON polling stay allowed.
- A state-changing request with none of the three headers comes from a non-browser client
  (curl, a script): every browser sends ``Sec-Fetch-Site`` since 2023 and ``Origin`` on every
  cross-site POST since 2019, so a browser cannot be driven to send a header-less POST, and
  it is allowed (such a client still needs the password). A header-less state-changing GET or
  HEAD is refused: an ``<img>`` in an older browser, with its referrer suppressed, sends no
  header at all. Non-browser clients POST instead (rq-dashboard's own pages always POST).
- The app serves rq-dashboard's static folder as its own: its templates link both
  ``url_for('static')`` (the favicon) and ``url_for('rq_dashboard.static')``, and both are
  ``/static/<path>``, where the app's route wins. With a folder of its own (``Flask(__name__)``
  looks in ``api/static``) every CSS and JS file answered 404; with none (``static_folder=None``)
  the page cannot build its favicon link and answers 500.

Behind a proxy that terminates TLS, the ``Origin``/``Referer`` comparison sees ``http`` and
refuses; only browsers without ``Sec-Fetch-Site`` rely on it, and they then fail closed.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, Response, request
from redis.exceptions import ResponseError as RedisResponseError
from rq.exceptions import NoSuchJobError
from rq_dashboard.web import setup_rq_connection

from shared.settings import PREFIX, Settings, SettingsError, load_settings

# The views of rq-dashboard 0.9.0 (rq_dashboard/web.py) that write to Redis, whatever their method.
STATE_CHANGING_ENDPOINTS = frozenset(
    {
        "rq_dashboard.delete_job_view",  # POST /job/<job_id>/delete
        "rq_dashboard.requeue_job_view",  # POST /job/<job_id>/requeue
        "rq_dashboard.requeue_all",  # GET and POST /requeue/<queue_name>
        "rq_dashboard.empty_queue",  # POST /queue/<queue_name>/<registry_name>/empty
        "rq_dashboard.compact_queue",  # POST /queue/<queue_name>/compact
    }
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # anything else changes state by definition
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})  # "none": the user typed or bookmarked it
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _authorized(settings: Settings) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode(), settings.dashboard_user.encode())
    password_ok = hmac.compare_digest((auth.password or "").encode(), settings.dashboard_password.encode())
    return user_ok and password_ok


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin() -> bool | None:
    """Whether the request is same-origin, from the first signal it carries; None without any."""
    own = f"{request.scheme}://{request.host}".lower()
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.strip().lower() in SAME_ORIGIN_FETCH_SITES
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.strip().lower() == own
    referer = request.headers.get("Referer")
    if referer is not None:
        return _origin_of(referer.strip()) == own
    return None


def _cross_site_refusal() -> str | None:
    """Why the current request must be refused as a cross-site state change; None to serve it."""
    if request.endpoint not in STATE_CHANGING_ENDPOINTS and request.method in SAFE_METHODS:
        return None
    same_origin = _same_origin()
    if same_origin is None:
        if request.method in ("GET", "HEAD"):
            return "a state change by GET needs a same-origin request; use POST\n"
        return None
    return None if same_origin else "cross-site request refused\n"


def create_dashboard(settings: Settings | None = None) -> Flask:
    """Build the dashboard app.

    Raises:
        SettingsError: no dashboard password is configured.
    """
    settings = settings or load_settings()
    if not settings.dashboard_password:
        raise SettingsError(f"{PREFIX}DASHBOARD_PASSWORD must be set: rq-dashboard is never served without it")
    app = Flask(__name__, static_folder=rq_dashboard.blueprint.static_folder)
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    app.config["RQ_DASHBOARD_POLL_INTERVAL"] = 2500
    setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="")

    @app.before_request
    def require_login() -> Response | None:
        if not _authorized(settings):
            return Response(
                "authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="spillway rq-dashboard"'}
            )
        return None

    @app.before_request
    def refuse_cross_site() -> Response | None:
        refusal = _cross_site_refusal()
        return None if refusal is None else Response(refusal, 403, mimetype="text/plain")

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    # rq-dashboard's own views raise on a job that is gone and on compacting an empty queue.
    @app.errorhandler(NoSuchJobError)
    def job_not_found(exc: NoSuchJobError) -> Response:
        return Response(f"no such job: {exc}\n", 404, mimetype="text/plain", headers=SECURITY_HEADERS)

    @app.errorhandler(RedisResponseError)
    def redis_refused(exc: RedisResponseError) -> Response:
        return Response(f"Redis refused the operation: {exc}\n", 409, mimetype="text/plain", headers=SECURITY_HEADERS)

    return app
