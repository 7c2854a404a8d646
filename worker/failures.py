"""Telling permanent failures (fail the export now) from transient ones (retry with backoff).

Invariant: an error is permanent only when retrying cannot help — the data or the bucket
is not what the export needs — every other error is retried by RQ and, on the last try,
fails the export with its message.
"""

from __future__ import annotations

import psycopg
from botocore.exceptions import ClientError

from shared.spec import SpecError

PERMANENT_S3_CODES = {
    "NoSuchBucket",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchUpload",
    "EntityTooSmall",
    "InvalidPart",
    "InvalidPartOrder",
}


class ExportError(Exception):
    """A permanent failure of an export, with a message for its owner."""


def is_permanent(exc: BaseException) -> bool:
    """Return whether retrying ``exc`` cannot succeed."""
    if isinstance(exc, (ExportError, SpecError)):
        return True  # SpecError: a stored request no longer valid (a dataset changed); retrying cannot fix it
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in PERMANENT_S3_CODES
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return False  # statement timeout or a cancel: the retry policy decides
    # Missing tables or columns, privileges, bad data: the same query would fail again.
    return isinstance(exc, (psycopg.ProgrammingError, psycopg.DataError, psycopg.IntegrityError))


def describe(exc: BaseException) -> str:
    """A one-line message for the export's ``error`` field."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"S3 {exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
    if isinstance(exc, psycopg.Error):
        sqlstate = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        return f"PostgreSQL{sqlstate}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"
