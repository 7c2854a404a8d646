"""Authentication: every API request carries ``Authorization: Bearer <key>``."""

from __future__ import annotations

from functools import wraps

from flask import g, request

from api.errors import ApiError
from api.extensions import resources
from shared.keys import Principal, authenticate


def current_principal() -> Principal:
    """The authenticated caller of this request."""
    return g.principal


def login_required(view):
    """Reject the request with 401 unless it carries a valid API key."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
        with resources().state_pool.connection() as conn:
            principal = authenticate(conn, key.strip())
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid or revoked API key")
        g.principal = principal
        return view(*args, **kwargs)

    return wrapped
