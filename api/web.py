"""The web page at ``/``: plain HTML, CSS and JavaScript modules in ``api/ui/``, no build step.

Invariant: the page is a client of the public API and nothing more. It holds no server-side
state and no session: the browser keeps the API key in ``sessionStorage`` and sends it in the
``Authorization`` header of its own requests (never in a URL, so never in an access log).
Every answer of this blueprint carries a Content-Security-Policy that allows scripts and styles
from this origin only (no inline script, no ``eval``), forbids framing, and sends no Referer.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

UI_DIR = Path(__file__).resolve().parent / "ui"

# Requests go to this origin only (connect-src); downloads are navigations to the presigned
# S3 URL, which a CSP does not govern. Forms are handled by the scripts (form-action 'none').
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidated on every load (ETag): a deploy reaches open tabs at their next reload.
    "Cache-Control": "no-cache",
}

bp = Blueprint("web", __name__, static_folder=UI_DIR, static_url_path="/ui")


@bp.get("/")
def index() -> Response:
    """The page itself; it signs in, then talks to the API like any client."""
    return send_from_directory(UI_DIR, "index.html")


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The page's icon, where browsers look for it on any page of this origin (a JSON answer too)."""
    return send_from_directory(UI_DIR, "icon.svg", mimetype="image/svg+xml")


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
