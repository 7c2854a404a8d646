"""S3 access: clients for the internal and the public endpoint, and presigned downloads.

Invariant: the code only ever sees an endpoint URL, a bucket and credentials from settings,
so moto, MinIO and AWS are interchangeable by configuration. Presigned URLs are signed
against the *public* endpoint (the address a client can reach), for GET only.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from shared.filenames import content_disposition
from shared.settings import Settings

# Checksums only when the operation requires them: S3-compatible servers (MinIO, moto)
# differ in their support of the newer default CRC checksums. Integrity of parts is
# checked with Content-MD5 instead, which every implementation verifies.
# Bodies are not hashed into the signature (UNSIGNED-PAYLOAD), whatever the endpoint's scheme:
# botocore already skips it over https when a Content-MD5 is sent, and did it over http only,
# for 0.6 s of worker CPU per GB. The signed Content-MD5 header still binds every part's body.
_CLIENT_CONFIG: dict[str, Any] = dict(
    signature_version="s3v4",
    s3={"addressing_style": "path", "payload_signing_enabled": False},
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    retries={"mode": "standard", "max_attempts": 5},
    max_pool_connections=16,
)


def object_key(settings: Settings, export_id: uuid.UUID, filename: str) -> str:
    """Where an export's object lives: ``<prefix><export id>/<filename>``."""
    return f"{settings.s3_prefix}{export_id}/{filename}"


STAGED_DIRECTORY = ".parts/"  # under the prefix: no export id starts with a dot


def staged_root(settings: Settings) -> str:
    """Where every staged export's chunk objects live (one prefix: a janitor lists only these,
    and a bucket lifecycle rule can expire them)."""
    return f"{settings.s3_prefix}{STAGED_DIRECTORY}"


def staged_prefix(settings: Settings, export_id: uuid.UUID) -> str:
    """Where one staged export's chunk objects live."""
    return f"{staged_root(settings)}{export_id}/"


def staged_key(settings: Settings, export_id: uuid.UUID, upload_part_number: int) -> str:
    """The object of one chunk attempt of a staged export (:mod:`shared.formats`)."""
    return f"{staged_prefix(settings, export_id)}{upload_part_number:05d}"


def export_id_of_key(settings: Settings, key: str) -> uuid.UUID | None:
    """The export id in an :func:`object_key`, or None for a key of another layout."""
    if not key.startswith(settings.s3_prefix):
        return None
    head = key[len(settings.s3_prefix) :].split("/", 1)[0]
    try:
        return uuid.UUID(head)
    except ValueError:
        return None


def _make_client(endpoint: str, settings: Settings, **config: Any) -> BaseClient:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(**{**_CLIENT_CONFIG, **config}),
    )


@lru_cache(maxsize=8)
def s3_client(settings: Settings) -> BaseClient:
    """Return a (cached) client for the internal S3 endpoint."""
    return _make_client(settings.s3_endpoint_url, settings, connect_timeout=5, read_timeout=60)


@lru_cache(maxsize=8)
def probe_s3_client(settings: Settings) -> BaseClient:
    """Return a client with short timeouts and no retries, for health checks."""
    t = settings.health_timeout_s
    return _make_client(
        settings.s3_endpoint_url,
        settings,
        connect_timeout=t,
        read_timeout=t,
        retries={"mode": "standard", "max_attempts": 1},
    )


@lru_cache(maxsize=8)
def public_s3_client(settings: Settings) -> BaseClient:
    """Return a (cached) client used only to presign URLs for the public endpoint."""
    return _make_client(settings.s3_public_endpoint_url, settings)


def presign_download(settings: Settings, key: str, filename: str, content_type: str = "text/csv; charset=utf-8") -> str:
    """Return a short-lived presigned GET URL that downloads ``key`` as ``filename``.

    Args:
        settings: where the bucket is and how long the URL lives (``download_url_ttl_s``).
        key: the object key.
        filename: the name the browser saves the file as.
        content_type: the file's media type (its format's).
    """
    url: str = public_s3_client(settings).generate_presigned_url(
        "get_object",
        Params={
            "Bucket": settings.s3_bucket,
            "Key": key,
            "ResponseContentDisposition": content_disposition(filename),
            "ResponseContentType": content_type,
        },
        ExpiresIn=settings.download_url_ttl_s,
    )
    return url
