"""The API's OpenAPI 3.1 document at ``GET /openapi.json``: every route, request body, answer
and error shape.

Invariant: the document lists exactly the app's routes (tests/integration/test_openapi.py
compares it with ``app.url_map`` and checks real answers against its schemas). Enumerations
(formats, compressions, deliveries, operators, statuses) are taken from the modules that
define them, so the document cannot drift from what the API accepts.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from shared.formats import COMPRESSIONS, FORMATS, GZIP_CONTENT_TYPE, OPTIONS, formats_json
from shared.models import ExportStatus
from shared.pgtypes import OPERATORS
from shared.spec import DELIVERIES

bp = Blueprint("openapi", __name__)

VERSION = "1.0.0"
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
ERROR_STATUSES = {
    "400": "Invalid request: the message and `field` name the problem; nothing was created",
    "401": "Missing, unknown or revoked API key",
    "403": "The key lacks an attribute a scoped dataset needs",
    "404": "No such export for this key's owner (another owner's export is a 404 too)",
    "408": "The body did not arrive within SPILLWAY_BODY_TIMEOUT_S",
    "409": "The export is not in a state that allows this (`export_status` says which)",
    "410": "The export's file was deleted (expired or missing)",
    "413": "The body is larger than SPILLWAY_MAX_BODY_BYTES",
    "415": "The body is not application/json",
    "422": "The Idempotency-Key was used with another request",
    "429": "Over a limit (`limit` names a rate limit or quota) or no read slot free; Retry-After says when to retry",
    "503": "A dependency (the database, the datasets file) is unavailable; retry shortly",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _media(media_type: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _operation(summary: str, ok: dict[str, dict[str, Any]], *errors: str) -> dict[str, Any]:
    """A route that needs a key: 401 without one, 503 when the database that checks it does not answer."""
    return {"summary": summary, "responses": {**ok, **_errors("401", *errors, "503")}}


def _public(summary: str, ok: dict[str, dict[str, Any]], *errors: str) -> dict[str, Any]:
    """A route without a key."""
    return {"summary": summary, "security": [], "responses": {**ok, **_errors(*errors)}}


EXPORT_ID = {"name": "export_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "the request field the problem is in"},
                    "limit": {"type": "string", "description": "on a 429: the limit that was reached"},
                    "export_status": {"type": "string"},
                    "export_id": {"type": "string"},
                },
            }
        },
    },
    "ExportRequest": {
        "type": "object",
        "required": ["dataset"],
        "additionalProperties": False,
        "properties": {
            "dataset": {"type": "string"},
            "columns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "filters": {
                "type": "object",
                "description": "{column: {operator: value}}, combined with AND and the dataset's row scope",
                "additionalProperties": {
                    "type": "object",
                    "propertyNames": {"enum": list(OPERATORS)},
                    "minProperties": 1,
                },
            },
            "format": {"enum": list(FORMATS), "default": "csv"},
            "compression": {"enum": list(COMPRESSIONS), "default": "none"},
            "delivery": {"enum": list(DELIVERIES), "default": "auto"},
            "filename": {"type": "string", "maxLength": 121},
            **{
                name: {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {option: {"type": "boolean"} for option in OPTIONS[name]},
                }
                for name in FORMATS
                if OPTIONS.get(name)
            },
            "notify": {
                "type": "object",
                "required": ["url", "secret"],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "secret": {"type": "string", "minLength": 16, "maxLength": 256},
                },
            },
        },
    },
    "Progress": {
        "type": "object",
        "required": ["total_rows", "rows_done", "parts_total", "parts_done", "bytes_done", "percent"],
        "properties": {
            "total_rows": {"type": ["integer", "null"]},
            "rows_done": {"type": "integer"},
            "parts_total": {"type": ["integer", "null"]},
            "parts_done": {"type": "integer"},
            "bytes_done": {"type": "integer"},
            "percent": {"type": "number", "minimum": 0, "maximum": 100},
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "event", "status", "attempts"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "event": {"type": "string"},
            "status": {"enum": ["pending", "delivered", "failed"]},
            "attempts": {"type": "integer"},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": NULLABLE_STRING,
            "delivered_at": NULLABLE_TIME,
        },
    },
    "Export": {
        "type": "object",
        "required": ["id", "status", "finished", "dataset", "request", "filename", "progress", "links"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"enum": [s.value for s in ExportStatus]},
            "finished": {"type": "boolean"},
            "dataset": {"type": "string"},
            "request": {"type": "object", "description": "the request as stored, defaults filled in"},
            "filename": {"type": "string"},
            "progress": _ref("Progress"),
            "object_bytes": {"type": ["integer", "null"]},
            "checksum": _or_null(
                {
                    "type": "object",
                    "required": ["algorithm", "value"],
                    "properties": {"algorithm": {"const": "crc32"}, "value": {"type": "string"}},
                }
            ),
            "error": NULLABLE_STRING,
            "created_at": NULLABLE_TIME,
            "started_at": NULLABLE_TIME,
            "finished_at": NULLABLE_TIME,
            "expires_at": NULLABLE_TIME,
            "download": _or_null(
                {
                    "type": "object",
                    "required": ["url", "expires_at"],
                    "properties": {"url": {"type": "string"}, "expires_at": {"type": "string"}},
                }
            ),
            "download_error": {"type": ["object", "null"]},
            "notify": _or_null(
                {
                    "type": "object",
                    "required": ["url", "deliveries"],
                    "properties": {
                        "url": {"type": "string"},
                        "deliveries": {"type": "array", "items": _ref("Delivery")},
                    },
                }
            ),
            "links": {
                "type": "object",
                "required": ["self", "download"],
                "properties": {"self": {"type": "string"}, "download": {"type": "string"}},
            },
        },
    },
    "ExportList": {
        "type": "object",
        "required": ["exports", "next_cursor"],
        "properties": {"exports": {"type": "array", "items": _ref("Export")}, "next_cursor": NULLABLE_STRING},
    },
    "Datasets": {
        "type": "object",
        "required": ["datasets", "formats"],
        "properties": {
            "datasets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "relation", "key", "scoped", "columns"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": NULLABLE_STRING,
                        "relation": {"type": "string"},
                        "relation_kind": {"type": "string"},
                        "key": {"type": "string"},
                        "default_columns": {"type": "array", "items": {"type": "string"}},
                        "scoped": {"type": "boolean"},
                        "scope_attributes": {"type": "array", "items": {"type": "string"}},
                        "columns": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "type", "kind", "filters"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "type": {"type": "string"},
                                    "kind": {"type": "string"},
                                    "renders_as": {"type": "string"},
                                    "filters": {"type": "array", "items": {"enum": list(OPERATORS)}},
                                    "values": {"type": "array", "items": {"type": "string"}},
                                    "description": NULLABLE_STRING,
                                },
                            },
                        },
                    },
                },
            },
            "formats": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "extension", "content_type", "compressions", "options"],
                    "properties": {
                        "name": {"enum": list(FORMATS)},
                        "extension": {"type": "string"},
                        "content_type": {"type": "string"},
                        "compressions": {"type": "array", "items": {"enum": list(COMPRESSIONS)}},
                        "options": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "Limits": {
        "type": "object",
        "required": ["owner", "limits"],
        "properties": {
            "owner": {"type": "string"},
            "limits": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "down": {"type": "array", "items": {"type": "string"}},
            "dependencies": {"type": "object"},
        },
    },
}

FILE = {"schema": {"type": "string", "format": "binary"}}
READINESS = {
    "200": _json(_ref("Health"), "Ready"),
    "503": _json(_ref("Health"), "A dependency is down (`down` names it)"),
}
PATHS: dict[str, Any] = {
    "/datasets": {"get": _operation("The exportable datasets and formats", {"200": _json(_ref("Datasets"), "OK")})},
    "/exports": {
        "post": {
            **_operation(
                "Create an export: answered inline (200, the file) or async (202, the export)",
                {
                    "200": {
                        "description": "Inline: the file itself",
                        "headers": {"X-Spillway-Rows": {"schema": {"type": "integer"}}},
                        "content": {t: FILE for t in [*(f["content_type"] for f in formats_json()), GZIP_CONTENT_TYPE]},
                    },
                    "202": {
                        **_json(_ref("Export"), "Accepted: the export, queued"),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                },
                "400",
                "403",
                "408",
                "413",
                "415",
                "422",
                "429",
            ),
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "description": "1-200 printable characters: a retry with this key and body gets the same export",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                }
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ExportRequest")}}},
        },
        "get": {
            **_operation("The caller's exports, newest first", {"200": _json(_ref("ExportList"), "OK")}, "400"),
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
        },
    },
    "/exports/{export_id}": {
        "parameters": [EXPORT_ID],
        "get": _operation("An export's status, progress and download", {"200": _json(_ref("Export"), "OK")}, "404"),
    },
    "/exports/{export_id}/download": {
        "parameters": [EXPORT_ID],
        "get": _operation(
            "Redirect to a fresh presigned URL of the file",
            {"302": {"description": "To the file", "headers": {"Location": {"schema": {"type": "string"}}}}},
            "404",
            "409",
            "410",
        ),
    },
    "/exports/{export_id}/cancel": {
        "parameters": [EXPORT_ID],
        "post": _operation("Cancel an export", {"200": _json(_ref("Export"), "Cancelled")}, "404", "409"),
    },
    "/limits": {"get": _operation("The caller's limits and use", {"200": _json(_ref("Limits"), "OK")})},
    "/health": {"get": _public("Readiness (as /health/ready)", READINESS)},
    "/health/ready": {"get": _public("Every dependency answers", READINESS)},
    "/health/live": {"get": _public("The process answers", {"200": _json(_ref("Health"), "Alive")})},
    "/metrics": {"get": _public("Prometheus metrics", {"200": _media("text/plain", "Prometheus text or OpenMetrics")})},
    "/openapi.json": {"get": _public("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")})},
    "/": {"get": _public("The web page", {"200": _media("text/html", "The page")})},
    "/favicon.ico": {"get": _public("The page's icon", {"200": _media("image/svg+xml", "SVG")})},
    "/ui/{filename}": {
        "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": _public("The page's scripts, styles and icon", {"200": {"description": "A static file"}}, "404"),
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Spillway",
        "version": VERSION,
        "description": "Exports of large PostgreSQL datasets: inline when small, else async with a presigned URL.",
    },
    "security": [{"apiKey": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"}
        },
        "schemas": SCHEMAS,
        "responses": {f"E{status}": _json(_ref("Error"), text) for status, text in ERROR_STATUSES.items()},
    },
}


@bp.get("/openapi.json")
def openapi():
    """This API's OpenAPI 3.1 document."""
    return jsonify(DOCUMENT)
