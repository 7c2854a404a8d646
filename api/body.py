"""Reading request bodies within limits: size (413), time (408), and strict JSON (400/415).

Invariant: no request body holds a thread longer than ``SPILLWAY_BODY_TIMEOUT_S`` or costs
more than ``SPILLWAY_MAX_BODY_BYTES`` of reading and parsing. Under gunicorn a timer shuts
the socket's reading side when the time is up, so even a client that trickles one byte a
second is cut off; the answer (408) can still be written. A reverse proxy that buffers
bodies (nginx) in front of gunicorn does this better still, for every route (README).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from flask import request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from api.errors import ApiError
from shared.jsonbody import BodyError, check_media_type, parse_json_body
from shared.settings import Settings


def _too_large(settings: Settings) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the request body is larger than {settings.max_body_bytes} bytes (SPILLWAY_MAX_BODY_BYTES)",
    )


def _cut_reading(sock: socket.socket, fired: threading.Event) -> None:
    fired.set()
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # the connection is already gone


def read_body(settings: Settings) -> bytes:
    """The raw body, refused when too large or too slow to arrive."""
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise _too_large(settings)
    sock = request.environ.get("gunicorn.socket")
    fired = threading.Event()
    timer = threading.Timer(settings.body_timeout_s, _cut_reading, (sock, fired)) if sock is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        data = request.stream.read(settings.max_body_bytes + 1)
    except RequestEntityTooLarge:
        raise _too_large(settings) from None
    except (ClientDisconnected, OSError):
        if fired.is_set():
            raise _timed_out(settings) from None
        raise ApiError(400, "incomplete_body", "the connection closed before the whole body arrived") from None
    finally:
        if timer is not None:
            timer.cancel()
    if fired.is_set():
        raise _timed_out(settings)
    if len(data) > settings.max_body_bytes:
        raise _too_large(settings)
    return bytes(data)


def _timed_out(settings: Settings) -> ApiError:
    return ApiError(
        408,
        "body_timeout",
        f"the request body did not arrive within {settings.body_timeout_s:g} s (SPILLWAY_BODY_TIMEOUT_S)",
    )


def read_json_body(settings: Settings) -> Any:
    """The body as strict JSON (``application/json``, UTF-8); ApiError 4xx otherwise."""
    try:
        check_media_type(request.headers.get("Content-Type"))
        return parse_json_body(read_body(settings))
    except BodyError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
