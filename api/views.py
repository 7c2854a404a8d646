"""The JSON shape of an export, as every endpoint answers it, and its signed download.

Invariant: a download URL is signed only for an object that one HEAD has just found with the
size and ETag recorded when the export completed; a missing object answers 410
``object_missing``, a replaced one 409 ``object_changed``, never a URL. An S3 error or outage
during that check is not the client's doing: the URL is signed anyway (signing needs no S3),
marked ``"verified": false`` — the client's own size and CRC-32 checks of the file are the
backstop. The HEAD is made only when a URL is signed, so polling a running export costs none.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from flask import url_for

from api.errors import ApiError
from shared.export_view import export_view, iso
from shared.formats import Output
from shared.models import Export, ExportStatus
from shared.settings import Settings
from shared.storage import presign_download, probe_s3_client
from shared.webhooks import Delivery

log = logging.getLogger(__name__)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})  # how S3 implementations say "no such object"


class ObjectCheck(StrEnum):
    """What a HEAD of an export's object found."""

    SAME = "same"  # the size and ETag recorded when the export completed
    MISSING = "missing"  # deleted behind Spillway's back
    CHANGED = "changed"  # replaced: another size or ETag
    UNVERIFIED = "unverified"  # S3 could not answer (outage, timeout, permissions)


def check_object(settings: Settings, export: Export) -> ObjectCheck:
    """HEAD the export's object and compare it with what the finalizer recorded.

    Uses the probe client (timeouts of ``health_timeout_s``, no retries), so an S3 outage
    costs a request at most that long, then counts as :attr:`ObjectCheck.UNVERIFIED`.
    """
    try:
        head = probe_s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=export.object_key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return ObjectCheck.MISSING
        log.warning("export %s: the check of its object failed (%s); signing unverified", export.id, exc)
        return ObjectCheck.UNVERIFIED
    except BotoCoreError as exc:  # connection refused, timeouts
        log.warning("export %s: S3 did not answer the check of its object (%s); signing unverified", export.id, exc)
        return ObjectCheck.UNVERIFIED
    if head.get("ContentLength") != export.object_bytes:
        return ObjectCheck.CHANGED
    if export.object_etag is not None and head.get("ETag") != export.object_etag:
        return ObjectCheck.CHANGED
    return ObjectCheck.SAME


def signed_download(settings: Settings, export: Export) -> dict[str, Any]:
    """Check a completed export's object (one HEAD) and sign a fresh URL for it.

    Returns:
        ``{"url", "expires_at", "verified"}``, plus a ``note`` when S3 could not be asked.

    Raises:
        ApiError: 410 ``object_missing`` when the object is gone, 409 ``object_changed`` when
            it is not the one Spillway wrote.
    """
    found = check_object(settings, export)
    if found == ObjectCheck.MISSING:
        raise ApiError(
            410,
            "object_missing",
            f"the file of export {export.id} is no longer in storage (deleted outside Spillway); create a new export",
        )
    if found == ObjectCheck.CHANGED:
        raise ApiError(
            409,
            "object_changed",
            f"the file of export {export.id} was replaced in storage after Spillway wrote it; create a new export",
        )
    url_expires = datetime.now(UTC) + timedelta(seconds=settings.download_url_ttl_s)
    link: dict[str, Any] = {
        "url": presign_download(
            settings, export.object_key or "", export.filename, Output.of_spec(export.spec).content_type
        ),
        "expires_at": iso(url_expires),
        "verified": found == ObjectCheck.SAME,
    }
    if found == ObjectCheck.UNVERIFIED:
        link["note"] = (
            "storage could not be asked whether the file is still the one Spillway wrote;"
            " the URL is signed anyway: check the file's size and checksum"
        )
    return link


def export_json(
    export: Export, settings: Settings, with_download: bool = False, notify: list[Delivery] | None = None
) -> dict[str, Any]:
    """Serialise an export; with ``with_download``, check the object and sign a fresh URL when completed.

    ``finished`` tells a client to stop polling (completed, failed, cancelled or expired).
    When the object is gone or replaced, ``download`` is None and ``download_error`` says why
    (the answer stays 200: the export itself is there).
    """
    body = export_view(export, notify)
    body["links"] = {
        "self": url_for("exports.get_export", export_id=export.id),
        "download": url_for("exports.download", export_id=export.id),
    }
    if with_download and export.status == ExportStatus.COMPLETED and export.object_key:
        try:
            body["download"] = signed_download(settings, export)
        except ApiError as exc:
            body["download_error"] = {"code": exc.code, "message": exc.message, "status": exc.status}
    return body
