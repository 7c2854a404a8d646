"""Composing a staged export's object (worker/assembly.py) against the real S3 endpoint: small
pieces joined, big ones copied by S3, and a second compose of an upload already completed."""

from __future__ import annotations

import uuid
import zlib

from shared.models import Chunk
from shared.settings import S3_MIN_PART_BYTES
from shared.spec import parse_spec
from shared.storage import s3_client, staged_key
from worker.assembly import compose, delete_staged


def chunk(part_number: int, data: bytes) -> Chunk:
    return Chunk(
        **{
            **dict.fromkeys(Chunk.__dataclass_fields__),
            "export_id": uuid.uuid4(),
            "part_number": part_number,
            "planned_rows": 0,
            "status": "done",
            "attempt": 1,
            "enqueued": True,
            "recoveries": 0,
            "upload_part_number": part_number * 10 + 1,
            "bytes": len(data),
            "crc32": zlib.crc32(data),
        }
    )


def test_compose_joins_small_pieces_copies_big_ones_and_survives_a_second_run(settings, bucket):
    client = s3_client(settings)
    export_id = uuid.uuid4()
    datas = [b"a" * 1000, b"b" * (S3_MIN_PART_BYTES + 7), b"c" * 10, b"d" * 20]
    parts = [chunk(n, data) for n, data in enumerate(datas, 1)]
    for part, data in zip(parts, datas, strict=True):
        client.put_object(Bucket=bucket, Key=staged_key(settings, export_id, part.upload_part_number or 0), Body=data)
    key = f"{settings.s3_prefix}{export_id}/x.csv.gz"
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    spec = parse_spec({"dataset": "products", "compression": "gzip"})
    stored, crc = compose(settings, export_id, spec, key, upload, parts)
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == b"".join(datas) and stored.size == len(body) and crc == zlib.crc32(body)
    again, crc_again = compose(
        settings, export_id, spec, key, upload, parts
    )  # a finalizer that died after S3 completed
    assert (again, crc_again) == (stored, crc)
    assert delete_staged(settings, export_id) == len(datas)
