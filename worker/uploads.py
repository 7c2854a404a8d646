"""S3 multipart operations of a worker: upload a part, complete, abort.

Invariant: a part's bytes are sent with their Content-MD5 or their CRC-32 (the export's
``part_checksum``), so S3 rejects a corrupted part instead of storing it; aborting or
completing an upload that is already gone is not an error when the object it was meant to
produce is there. A completed object is always read back (HEAD): its size must equal the
parts', its CRC-32 checksum (an upload created with CRC-32 checksums, on a store that reports
it) must be the one its parts' CRCs make, and its ETag is what the export records.
"""

from __future__ import annotations

import base64
import logging
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from shared.settings import Settings
from shared.storage import s3_client
from worker.failures import ExportError

log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def crc32_checksum(crc32: int) -> str:
    """A CRC-32 as S3 writes it (``x-amz-checksum-crc32``): its 4 big-endian bytes in base64."""
    return _b64(crc32.to_bytes(4, "big"))


@dataclass(frozen=True)
class Digest:
    """What S3 checks a body against: its MD5 (Content-MD5, every S3-compatible store checks
    it) or, when there is none, its CRC-32 (``x-amz-checksum-crc32``: S3, MinIO)."""

    md5: bytes | None = None
    crc32: int = 0

    def params(self) -> dict[str, str]:
        """The request parameters that carry it."""
        if self.md5 is not None:
            return {"ContentMD5": _b64(self.md5)}
        return {"ChecksumCRC32": crc32_checksum(self.crc32)}


class Body(Protocol):
    """What a part's bytes are sent from: read in pieces, rewound to retry a request."""

    def read(self, size: int = -1, /) -> bytes | memoryview: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


def upload_part(
    settings: Settings, key: str, upload_id: str, part_number: int, body: Body, size: int, digest: Digest
) -> str:
    """Upload one part; return its ETag."""
    response = s3_client(settings).upload_part(
        Bucket=settings.s3_bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=part_number,
        Body=body,
        ContentLength=size,
        **digest.params(),
    )
    etag: str = response["ETag"]
    return etag


def put_staged(settings: Settings, key: str, body: Body, size: int, digest: Digest) -> str:
    """Store one chunk's bytes of a staged export as an object of its own; return its ETag."""
    response = s3_client(settings).put_object(
        Bucket=settings.s3_bucket, Key=key, Body=body, ContentLength=size, **digest.params()
    )
    etag: str = response["ETag"]
    return etag


@dataclass(frozen=True)
class StoredObject:
    """A completed object as S3 describes it (HEAD): what later checks compare against."""

    size: int
    etag: str


def composite_crc32(part_crc32s: list[int]) -> str:
    """S3's CRC-32 checksum of an upload created with them (type COMPOSITE): the CRC-32 of its
    parts' CRC-32s (4 big-endian bytes each, in order), in base64."""
    return crc32_checksum(zlib.crc32(b"".join(crc.to_bytes(4, "big") for crc in part_crc32s)))


def complete_upload(
    settings: Settings,
    key: str,
    upload_id: str,
    parts: list[tuple[int, str]],
    expected: int,
    part_crc32s: list[int] | None = None,
) -> StoredObject:
    """Complete the upload from ``(part number, ETag)`` pairs in order and return the object's
    size and ETag, which must be ``expected`` bytes.

    Args:
        part_crc32s: the parts' CRC-32s, in the same order, for an upload created with CRC-32
            checksums: S3 wants each part's with the completion, and the object's checksum is
            then checked against them.

    If the upload is already gone (a lost answer to an earlier complete), the object is
    checked instead: it must exist with the expected size (and checksum).
    """
    listed: list[dict[str, Any]] = [{"PartNumber": number, "ETag": etag} for number, etag in parts]
    if part_crc32s is not None:
        for part, crc in zip(listed, part_crc32s, strict=True):
            part["ChecksumCRC32"] = crc32_checksum(crc)
    try:
        s3_client(settings).complete_multipart_upload(
            Bucket=settings.s3_bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise
        log.warning("upload %s of %s is gone; checking the object", upload_id, key)
    return stored_object(settings, key, expected, part_crc32s)


def stored_object(settings: Settings, key: str, expected: int, part_crc32s: list[int] | None = None) -> StoredObject:
    """The object as S3 describes it (HEAD), which must be ``expected`` bytes.

    Args:
        part_crc32s: for an upload created with CRC-32 checksums, its parts' CRC-32s: the
            object's checksum, when the store reports one, must be the one they make
            (:func:`composite_crc32`, written ``<checksum>-<parts>``).
    """
    mode = {"ChecksumMode": "ENABLED"} if part_crc32s is not None else {}
    head = s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=key, **mode)
    size: int = head["ContentLength"]
    if size != expected:
        raise ExportError(f"object {key} has {size} bytes, its parts {expected}")
    reported = head.get("ChecksumCRC32")
    if part_crc32s is not None and reported and head.get("ChecksumType", "COMPOSITE") == "COMPOSITE":
        value, _, count = reported.partition("-")
        made = composite_crc32(part_crc32s)
        if value != made or count not in ("", str(len(part_crc32s))):
            raise ExportError(f"object {key} has the CRC-32 checksum {reported}, its parts make {made}")
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
