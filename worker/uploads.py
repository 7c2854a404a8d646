"""S3 multipart operations of a worker: upload a part, complete, abort.

Invariant: a part's bytes are sent with their Content-MD5, so S3 rejects a corrupted part
instead of storing it; aborting or completing an upload that is already gone is not an error
when the object it was meant to produce is there. A completed object is always read back
(HEAD): its size must equal the parts', and its ETag is what the export records.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import IO

from botocore.exceptions import ClientError

from shared.settings import Settings
from shared.storage import s3_client
from worker.failures import ExportError

log = logging.getLogger(__name__)


def upload_part(
    settings: Settings, key: str, upload_id: str, part_number: int, body: IO[bytes], size: int, md5: bytes
) -> str:
    """Upload one part; return its ETag."""
    response = s3_client(settings).upload_part(
        Bucket=settings.s3_bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=part_number,
        Body=body,
        ContentLength=size,
        ContentMD5=base64.b64encode(md5).decode(),
    )
    etag: str = response["ETag"]
    return etag


def put_staged(settings: Settings, key: str, body: IO[bytes], size: int, md5: bytes) -> str:
    """Store one chunk's bytes of a staged export as an object of its own; return its ETag."""
    response = s3_client(settings).put_object(
        Bucket=settings.s3_bucket,
        Key=key,
        Body=body,
        ContentLength=size,
        ContentMD5=base64.b64encode(md5).decode(),
    )
    etag: str = response["ETag"]
    return etag


@dataclass(frozen=True)
class StoredObject:
    """A completed object as S3 describes it (HEAD): what later checks compare against."""

    size: int
    etag: str


def complete_upload(
    settings: Settings, key: str, upload_id: str, parts: list[tuple[int, str]], expected: int
) -> StoredObject:
    """Complete the upload from ``(part number, ETag)`` pairs in order and return the object's
    size and ETag, which must be ``expected`` bytes.

    If the upload is already gone (a lost answer to an earlier complete), the object is
    checked instead: it must exist with the expected size.
    """
    client = s3_client(settings)
    try:
        client.complete_multipart_upload(
            Bucket=settings.s3_bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise
        log.warning("upload %s of %s is gone; checking the object", upload_id, key)
    return stored_object(settings, key, expected)


def stored_object(settings: Settings, key: str, expected: int) -> StoredObject:
    """The object as S3 describes it (HEAD), which must be ``expected`` bytes."""
    head = s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=key)
    size: int = head["ContentLength"]
    if size != expected:
        raise ExportError(f"object {key} has {size} bytes, its parts {expected}")
    return StoredObject(size, str(head["ETag"]))


def abort_upload(settings: Settings, key: str | None, upload_id: str | None) -> None:
    """Abort a multipart upload (its parts are deleted); a missing upload is fine."""
    if not key or not upload_id:
        return
    try:
        s3_client(settings).abort_multipart_upload(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
            raise
