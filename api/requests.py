"""Request ids: every API request has one, in each of its log lines and in the answer's
``X-Request-Id`` header (gunicorn's access line reads it back from there: shared/logs.py).

A caller's own ``X-Request-Id`` (a proxy's, a client's) is kept when it is a plain token, so
one id follows a request across systems; anything else is replaced by a new random id.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from shared.logs import close_context, open_context

HEADER = "X-Request-Id"
_ACCEPTED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")  # no spaces, quotes or control characters


def request_id() -> str:
    """This request's id: the caller's when it is a plain token, a new one otherwise."""
    given = request.headers.get(HEADER, "")
    return given if _ACCEPTED.fullmatch(given) else uuid.uuid4().hex


def init_app(app: Flask) -> None:
    @app.before_request
    def open_request_context() -> None:
        g.request_id = request_id()
        g.log_token = open_context(request_id=g.request_id)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[HEADER] = g.request_id
        return response

    @app.teardown_request
    def close_request_context(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            close_context(token)
