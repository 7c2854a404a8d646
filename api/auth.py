"""Authentication: every API request carries ``Authorization: Bearer <key>``.

Valid keys are remembered per process for ``SPILLWAY_AUTH_CACHE_S`` seconds (status polls
are the bulk of the traffic; this saves a database round trip on each). A revoked key
therefore keeps working for at most that long in a process that saw it.
"""

from __future__ import annotations

import threading
import time
from functools import wraps

from flask import g, request

from api.errors import ApiError
from api.extensions import resources, settings
from shared.keys import Principal, authenticate, hash_key
from shared.logs import bind_log_context

_cache: dict[str, tuple[Principal, float]] = {}
_cache_lock = threading.Lock()
_CACHE_LIMIT = 10_000  # keys remembered at most; the cache is cleared when full


def current_principal() -> Principal:
    """The authenticated caller of this request."""
    return g.principal


def _principal(key: str) -> Principal | None:
    ttl = settings().auth_cache_s
    digest = hash_key(key)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached and cached[1] > now:
        return cached[0]
    with resources().state_pool.connection() as conn:
        principal = authenticate(conn, key)
    if principal is not None and ttl > 0:
        with _cache_lock:
            if len(_cache) >= _CACHE_LIMIT:
                _cache.clear()
            _cache[digest] = (principal, now + ttl)
    return principal


def login_required(view):
    """Reject the request with 401 unless it carries a valid API key."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
        principal = _principal(key.strip())
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid or revoked API key")
        g.principal = principal
        bind_log_context(owner=principal.owner)
        return view(*args, **kwargs)

    return wrapped
