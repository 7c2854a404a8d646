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
import zlib

import pytest

from api import create_app
from shared.storage import s3_client
from tests.support.api import ApiSession, download
from tests.support.state import chunk_rows
from worker.uploads import abort_upload, upload_part

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


def test_a_part_travels_with_its_content_md5_signed_and_its_body_unhashed(settings, bucket):
    """Parts are bound by the signed Content-MD5 header; the SigV4 body hash (botocore's, over
    plain http only) is skipped, as botocore itself does over https."""
    client = s3_client(settings)
    sent: list[dict[str, str]] = []

    def keep(request, **_):
        sent.append({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.UploadPart", keep)
    key = f"{settings.s3_prefix}probe/part"
    upload = client.create_multipart_upload(Bucket=settings.s3_bucket, Key=key)["UploadId"]
    try:
        body = b"a part's bytes"
        upload_part(settings, key, upload, 1, io.BytesIO(body), len(body), hashlib.md5(body).digest())
    finally:
        client.meta.events.unregister("before-send.s3.UploadPart", keep)
        abort_upload(settings, key, upload)
    (headers,) = sent
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(body).digest()).decode()
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "content-md5" in signed
