"""The object's checksum and the download check, end to end: real workers, Postgres and S3.

A completed export's CRC-32 (combined from its parts' CRCs) is the CRC-32 of the bytes a
client downloads; an object deleted or replaced behind Spillway's back is never handed out
(410 ``object_missing``, 409 ``object_changed``) while ``GET /exports/<id>`` still answers
200 saying why; an S3 outage during the check signs the URL anyway, marked unverified.
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import uuid
import zlib

import psycopg
import pytest

from api import create_app
from shared.storage import s3_client
from tests.support.api import ApiSession, download
from tests.support.state import chunk_rows
from tests.support.workers import WorkerPool
from worker.failures import ExportError
from worker.uploads import Digest, abort_upload, complete_upload, composite_crc32, stored_object, upload_part

SMALL = {"dataset": "products", "columns": ["id", "name", "price"], "filters": {"id": {"lte": 2_000}}}


def object_key_of(settings, done) -> str:
    return f"{settings.s3_prefix}{done['id']}/{done['filename']}"


def test_the_checksum_is_the_crc32_of_the_downloaded_bytes(api, settings):
    done, data = api.run({"dataset": "products", "filters": {"id": {"lte": 120_000}}, "csv": {"bom": True}})
    assert done["checksum"] == {"algorithm": "crc32", "value": f"{zlib.crc32(data):08x}"}
    assert done["download"]["verified"] is True and done["download_error"] is None
    parts = chunk_rows(settings, done["id"])
    assert len(parts) > 1  # the whole-object CRC really was combined from several parts
    offset = 0
    for part in parts:  # each part's CRC is that of its own bytes, the BOM and header in part 1
        assert part["crc32"] == zlib.crc32(data[offset : offset + part["bytes"]])
        offset += part["bytes"]
    assert offset == len(data)


def test_a_deleted_object_answers_410_and_the_status_says_why(api, settings):
    done, _ = api.run(SMALL)
    s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=object_key_of(settings, done))
    response = api.get(f"/exports/{done['id']}/download")
    assert response.status_code == 410
    error = response.get_json()["error"]
    assert error["code"] == "object_missing" and done["id"] in error["message"]
    assert "no longer in storage" in error["message"]
    status = api.get(f"/exports/{done['id']}")
    assert status.status_code == 200
    body = status.get_json()
    assert body["status"] == "completed" and body["download"] is None
    assert body["download_error"]["code"] == "object_missing"


def test_a_replaced_object_answers_409_and_the_status_says_why(api, settings):
    done, data = api.run(SMALL)
    key = object_key_of(settings, done)
    s3_client(settings).put_object(Bucket=settings.s3_bucket, Key=key, Body=data.replace(b",", b";"))  # same size
    response = api.get(f"/exports/{done['id']}/download")
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "object_changed" and "replaced" in error["message"]
    body = api.get(f"/exports/{done['id']}").get_json()
    assert body["download"] is None and body["download_error"]["code"] == "object_changed"


@pytest.fixture
def s3_down_for_the_api(settings, keys):
    """alice's session on an API whose S3 endpoint refuses connections (the public one still signs)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    application = create_app(settings.replace(s3_endpoint_url=f"http://127.0.0.1:{closed_port}"))
    application.config["TESTING"] = True
    yield ApiSession(application.test_client(), keys["alice"])
    application.extensions["spillway"].close()


def test_an_s3_outage_during_the_check_signs_the_url_unverified(api, s3_down_for_the_api):
    done, data = api.run(SMALL)
    response = s3_down_for_the_api.get(f"/exports/{done['id']}/download")
    assert response.status_code == 302
    assert response.headers["X-Spillway-Object-Check"] == "unverified"
    assert download(response.headers["Location"]) == data  # S3 is only down for the API's check
    body = s3_down_for_the_api.status(done["id"])
    assert body["download"]["verified"] is False and "checksum" in body["download"]["note"]
    assert body["checksum"]["value"] == f"{zlib.crc32(data):08x}"


def _sent_part_headers(settings, digest) -> list[dict[str, str]]:
    """The headers one part went out with (its body: ``b"a part's bytes"``)."""
    client = s3_client(settings)
    sent: list[dict[str, str]] = []

    def keep(request, **_):
        sent.append({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.UploadPart", keep)
    key = f"{settings.s3_prefix}probe/part"
    checksum = {} if digest.md5 is not None else {"ChecksumAlgorithm": "CRC32"}
    upload = client.create_multipart_upload(Bucket=settings.s3_bucket, Key=key, **checksum)["UploadId"]
    try:
        upload_part(settings, key, upload, 1, io.BytesIO(PART), len(PART), digest)
    finally:
        client.meta.events.unregister("before-send.s3.UploadPart", keep)
        abort_upload(settings, key, upload)
    return sent


PART = b"a part's bytes"


def test_a_part_travels_with_its_content_md5_signed_and_its_body_unhashed(settings, bucket):
    """Parts are bound by the signed Content-MD5 header; the SigV4 body hash (botocore's, over
    plain http only) is skipped, as botocore itself does over https."""
    (headers,) = _sent_part_headers(settings, Digest(md5=hashlib.md5(PART).digest(), crc32=zlib.crc32(PART)))
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(PART).digest()).decode()
    assert not any(name.startswith("x-amz-checksum-") for name in headers)  # one check, not two
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "content-md5" in signed


def test_a_part_can_travel_with_its_crc32_instead_signed(settings, bucket):
    """With CRC-32 part checksums, the part's CRC-32 (4 big-endian bytes in base64, as S3 and
    MinIO check it) replaces the Content-MD5, and is signed as that was."""
    (headers,) = _sent_part_headers(settings, Digest(crc32=zlib.crc32(PART)))
    assert headers["x-amz-checksum-crc32"] == base64.b64encode(zlib.crc32(PART).to_bytes(4, "big")).decode()
    assert "content-md5" not in headers
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "x-amz-checksum-crc32" in signed


def _crc32_upload(settings, bodies: list[bytes]) -> tuple[str, str, list[tuple[int, str]]]:
    client = s3_client(settings)
    key = f"{settings.s3_prefix}probe/crc32-{uuid.uuid4()}"
    upload = client.create_multipart_upload(Bucket=settings.s3_bucket, Key=key, ChecksumAlgorithm="CRC32")["UploadId"]
    parts = [
        (n, upload_part(settings, key, upload, n, io.BytesIO(body), len(body), Digest(crc32=zlib.crc32(body))))
        for n, body in enumerate(bodies, 1)
    ]
    return key, upload, parts


def test_an_upload_with_crc32_parts_completes_checked_against_the_parts_crcs(settings, bucket):
    """S3 computes the object's checksum from the bytes it stored; the finalizer's check is
    that it is the one the CRCs the workers recorded make."""
    bodies = [bytes([n]) * (5 * 1024 * 1024) for n in (1, 2)] + [b"the last part"]
    key, upload, parts = _crc32_upload(settings, bodies)
    crcs = [zlib.crc32(body) for body in bodies]
    stored = complete_upload(settings, key, upload, parts, sum(map(len, bodies)), crcs)
    head = s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"].split("-")[0] == composite_crc32(crcs)  # S3 writes "-3" after it, moto not
    assert stored.size == sum(map(len, bodies))
    with pytest.raises(ExportError, match="CRC-32 checksum"):  # CRCs the stored bytes do not have
        stored_object(settings, key, stored.size, [crcs[0], crcs[2], crcs[1]])
    s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=key)


CRC32_CASES = [
    pytest.param({"dataset": "products", "filters": {"id": {"lte": 120_000}}}, id="csv-several-parts"),
    pytest.param({"dataset": "products", "format": "jsonl", "filters": {"id": {"lte": 120_000}}}, id="jsonl"),
    pytest.param(
        {"dataset": "products", "format": "csv", "compression": "gzip", "filters": {"id": {"lte": 60_000}}},
        id="csv-gzip-staged",
    ),
    pytest.param(
        {"dataset": "orders", "format": "xlsx", "filters": {"id": {"lt": "01000000-0000-0000-0000-000000000000"}}},
        id="xlsx-staged",
    ),
]


@pytest.fixture(scope="module")
def crc32_api(settings, workers, keys):
    """alice's session on an API and a worker that plan exports with CRC-32 part checksums
    (queues of their own). The session's other workers, on Content-MD5, serve them too: an
    export's checksum is the one recorded when it was planned."""
    crc32 = settings.replace(s3_part_checksum="crc32", queue_prefix=f"crc32-{uuid.uuid4().hex[:8]}")
    pool = WorkerPool(crc32)
    pool.start(1)
    application = create_app(crc32)
    application.config["TESTING"] = True
    yield ApiSession(application.test_client(), keys["alice"]), crc32
    application.extensions["spillway"].close()
    pool.stop()


@pytest.mark.parametrize("body", CRC32_CASES)
def test_crc32_part_checksums_write_the_same_bytes(api, crc32_api, settings, body):
    crc32_session, crc32_settings = crc32_api
    done, data = crc32_session.run(body)
    _, reference = api.run(body)  # the same export with Content-MD5
    assert data == reference
    assert done["checksum"]["value"] == f"{zlib.crc32(data):08x}"
    with psycopg.connect(settings.state_database_url) as conn:
        (recorded,) = conn.execute("SELECT part_checksum FROM exports WHERE id = %s", (done["id"],)).fetchone()
    assert recorded == "crc32"
    head = s3_client(settings).head_object(
        Bucket=settings.s3_bucket, Key=object_key_of(settings, done), ChecksumMode="ENABLED"
    )
    if body.get("compression") or body.get("format") == "xlsx":
        assert "ChecksumCRC32" not in head  # composed by the finalizer, with Content-MD5
    else:
        crcs = [c["crc32"] for c in chunk_rows(settings, done["id"])]
        assert head["ChecksumCRC32"].split("-")[0] == composite_crc32(crcs) and len(crcs) > 1
