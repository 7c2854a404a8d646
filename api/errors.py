"""JSON errors: every 4xx/5xx answer is ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import psycopg
from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

from shared.datasets import DatasetsError


class ApiError(Exception):
    """An error answered to the client with a status code and a message naming the problem."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: object
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def _error_body(code: str, message: str, **details: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, **details}}


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        if exc.status == 429:
            from api.metrics import LIMITED

            LIMITED.labels(str(exc.details.get("limit", exc.code))).inc()
        response = jsonify(_error_body(exc.code, exc.message, **exc.details))
        response.status_code = exc.status
        response.headers.update(exc.headers)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="spillway"'
        return response

    @app.errorhandler(psycopg.OperationalError)
    def handle_database_unavailable(exc: psycopg.OperationalError):
        current_app.logger.warning("database unavailable: %s", exc)
        response = jsonify(_error_body("database_unavailable", "the database is unreachable; retry shortly"))
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(DatasetsError)
    def handle_datasets_error(exc: DatasetsError):  # a check deferred at start failed once the database answered
        current_app.logger.error("datasets file: %s", exc)
        response = jsonify(_error_body("datasets_unavailable", f"the datasets file is unusable: {exc}"))
        response.status_code = 503
        return response

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        response = jsonify(_error_body(code, exc.description or exc.name))
        response.status_code = exc.code or 500
        original = exc.get_response().headers
        for header in ("Allow", "Retry-After", "Location"):
            if original.get(header):
                response.headers[header] = original[header]
        return response
