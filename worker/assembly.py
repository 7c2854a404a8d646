"""Composing a staged export's object (gzip, XLSX) from its chunks' objects, as one multipart upload.

A compressed chunk's size is known only once it is written, and S3 refuses a non-last part
under 5 MiB, so chunks of these formats store their bytes as objects of their own
(:func:`shared.storage.staged_key`). The finalizer lays the file out — each chunk's object
in part order, with the bytes the format puts between and after them (an XLSX sheet's data
descriptor, the workbook's trailer) — and groups the pieces into parts of at least 5 MiB: a
chunk object that big on its own is copied by S3 itself (UploadPartCopy, no byte through the
worker); smaller neighbours are read and joined into one part (bounded: a group closes as
soon as it reaches the minimum).

Invariant: the object's bytes are the pieces in order, whatever the grouping, and its CRC-32
is the pieces' CRCs combined; the staged objects are deleted once the object is complete
(and by the cleanup of a cancelled or failed export).
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from botocore.exceptions import ClientError

from shared.crc import crc32_of_parts
from shared.formats import Position, Workbook
from shared.models import Chunk
from shared.settings import S3_MIN_PART_BYTES, Settings
from shared.spec import ExportSpec
from shared.storage import s3_client, staged_key, staged_prefix
from shared.xlsx import SHEET_MAX_ROWS
from worker.failures import ExportError
from worker.uploads import Digest, StoredObject, complete_upload, stored_object, upload_part

SPOOL_BYTES = 32 * 1024 * 1024  # a joined part larger than this is buffered on disk
READ_BYTES = 1024 * 1024
DELETE_BATCH = 1000  # S3's limit of keys per DeleteObjects


@dataclass(frozen=True)
class Piece:
    """A run of the file's bytes: a staged chunk object (``key``) or bytes the finalizer writes."""

    size: int
    crc32: int
    key: str | None = None
    data: bytes = b""


def layout(settings: Settings, export_id: uuid.UUID, spec: ExportSpec, parts: list[Chunk]) -> list[Piece]:
    """The file as pieces in order: the recorded chunks' objects and the format's own bytes."""
    pieces: list[Piece] = []
    book = Workbook() if spec.format == "xlsx" else None
    sheet_rows: dict[int, int] = {}
    for part in parts:
        if part.bytes is None or part.crc32 is None or part.upload_part_number is None:
            raise ExportError(f"part {part.part_number} was recorded without its size or checksum")
        pieces.append(Piece(part.bytes, part.crc32, key=staged_key(settings, export_id, part.upload_part_number)))
        if book is not None:
            position = Position.of(part.part_number, part.layout)
            sheet = position.sheet or 1
            sheet_rows[sheet] = sheet_rows.get(sheet, 0) + (part.rows or 0)
            if sheet_rows[sheet] > SHEET_MAX_ROWS:
                raise ExportError(
                    f"sheet {sheet} would hold {sheet_rows[sheet]} rows, more than Excel's {SHEET_MAX_ROWS}:"
                    " rows were added while the export ran; run it again"
                )
            try:
                between = book.after_chunk(position, part.bytes, part.raw_bytes or 0, part.raw_crc32 or 0)
            except ValueError as exc:  # a sheet past 4 GiB that was planned without ZIP64
                raise ExportError(f"sheet {position.sheet} cannot be written: {exc}") from None
            if between:
                pieces.append(Piece(len(between), zlib.crc32(between), data=between))
    if book is not None:
        trailer = book.trailer()
        pieces.append(Piece(len(trailer), zlib.crc32(trailer), data=trailer))
    return pieces


def groups(pieces: list[Piece], minimum: int = S3_MIN_PART_BYTES) -> Iterator[list[Piece]]:
    """Consecutive pieces grouped into parts of at least ``minimum`` bytes (the last: the rest)."""
    group: list[Piece] = []
    size = 0
    for piece in pieces:
        group.append(piece)
        size += piece.size
        if size >= minimum:
            yield group
            group, size = [], 0
    if group:
        yield group


def _copy_into(settings: Settings, key: str, out: IO[bytes], md5: hashlib._Hash) -> None:
    body = s3_client(settings).get_object(Bucket=settings.s3_bucket, Key=key)["Body"]
    for block in iter(lambda: body.read(READ_BYTES), b""):
        out.write(block)
        md5.update(block)


class ComposeSuperseded(Exception):
    """A newer finalize attempt owns the export (this one's lease ran out while composing)."""


def compose(
    settings: Settings,
    export_id: uuid.UUID,
    spec: ExportSpec,
    object_key: str,
    upload_id: str,
    parts: list[Chunk],
    renew: Callable[[], bool] = lambda: True,
) -> tuple[StoredObject, int]:
    """Upload the file's parts from the staged chunks and complete the upload.

    Args:
        renew: called after each part; extends the finalizer's lease, False when a newer
            attempt took over (composing then stops with :class:`ComposeSuperseded`).

    Returns:
        The completed object, and its CRC-32 (combined from the pieces').

    An upload already completed (an earlier attempt completed it and died before recording
    it) is not an error: the object is checked instead, as :func:`complete_upload` does.
    """
    pieces = layout(settings, export_id, spec, parts)
    crc32 = crc32_of_parts((p.crc32, p.size) for p in pieces)
    expected = sum(p.size for p in pieces)
    try:
        # Asked first: S3 answers a part of a completed upload NoSuchUpload, moto an error 500.
        s3_client(settings).list_parts(Bucket=settings.s3_bucket, Key=object_key, UploadId=upload_id, MaxParts=1)
        uploaded = _upload_parts(settings, object_key, upload_id, pieces, renew)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise
        return stored_object(settings, object_key, expected), crc32
    return complete_upload(settings, object_key, upload_id, uploaded, expected), crc32


def _upload_parts(
    settings: Settings, object_key: str, upload_id: str, pieces: list[Piece], renew: Callable[[], bool]
) -> list[tuple[int, str]]:
    client = s3_client(settings)
    uploaded: list[tuple[int, str]] = []
    for number, group in enumerate(groups(pieces), 1):
        if number > 1 and not renew():
            raise ComposeSuperseded("a newer finalize attempt owns the export")
        if len(group) == 1 and group[0].key is not None:
            response = client.upload_part_copy(
                Bucket=settings.s3_bucket,
                Key=object_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": settings.s3_bucket, "Key": group[0].key},
            )
            uploaded.append((number, str(response["CopyPartResult"]["ETag"])))
            continue
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
            md5 = hashlib.md5()
            for piece in group:
                if piece.key is not None:
                    _copy_into(settings, piece.key, buffer, md5)
                else:
                    buffer.write(piece.data)
                    md5.update(piece.data)
            size = buffer.tell()
            buffer.seek(0)
            digest = Digest(md5=md5.digest())
            uploaded.append((number, upload_part(settings, object_key, upload_id, number, buffer, size, digest)))
    return uploaded


def delete_staged(settings: Settings, export_id: uuid.UUID) -> int:
    """Delete every staged chunk object of an export (all attempts'); return how many."""
    client = s3_client(settings)
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix=staged_prefix(settings, export_id)):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            client.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": batch, "Quiet": True})
            deleted += len(batch)
    return deleted
