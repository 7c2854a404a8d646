"""The S3 endpoint as tests see it: uploads and objects of a key, a bucket removed with all
it holds, and a proxy that injects failures between the workers and S3."""

from __future__ import annotations

import http.client
import http.server
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError

from shared.settings import Settings
from shared.storage import s3_client, staged_prefix


def uploads(settings: Settings, prefix: str = "") -> list[dict[str, Any]]:
    """The multipart uploads in progress under ``prefix`` (each with ``Key`` and ``UploadId``)."""
    scope = {"Prefix": prefix} if prefix else {}
    return s3_client(settings).list_multipart_uploads(Bucket=settings.s3_bucket, **scope).get("Uploads", [])


def uploads_for(settings: Settings, key: str) -> list[str]:
    """The ids of the multipart uploads in progress for exactly ``key``."""
    return [u["UploadId"] for u in uploads(settings, key) if u["Key"] == key]


def object_exists(settings: Settings, key: str) -> bool:
    """Whether the bucket holds an object at ``key``."""
    try:
        s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=key)
        return True
    except ClientError:
        return False


def staged_objects(settings: Settings, export_id: str) -> list[str]:
    """The staged chunk objects S3 still holds for an export."""
    listing = s3_client(settings).list_objects_v2(
        Bucket=settings.s3_bucket, Prefix=staged_prefix(settings, uuid.UUID(export_id))
    )
    return [o["Key"] for o in listing.get("Contents", [])]


def remove_bucket(settings: Settings) -> None:
    """Abort the bucket's uploads, delete its objects, then the bucket itself."""
    client = s3_client(settings)
    for upload in uploads(settings):
        client.abort_multipart_upload(Bucket=settings.s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=settings.s3_bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=settings.s3_bucket)


class FaultProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy in front of the S3 endpoint that answers 500 to chosen requests.

    ``fail_upload_part_every``: every n-th UploadPart gets a 500 (and never reaches S3).
    ``lose_complete_answers``: CompleteMultipartUpload reaches S3, but its answer is replaced
    by a 500 — the ambiguous completion a client must resolve.
    ``fail_completes``: so many CompleteMultipartUpload requests get a 500 (and never reach S3).
    ``hold_completes``: so many CompleteMultipartUpload requests wait, read and not yet sent
    on, until ``released`` is set; ``holding`` is set when the first one waits.
    """

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlsplit(upstream)
        self.fail_upload_part_every = 0
        self.lose_complete_answers = 0
        self.fail_completes = 0
        self.hold_completes = 0
        self.holding, self.released = threading.Event(), threading.Event()
        self.upload_parts = 0
        self.injected = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.released.set()  # a held request ends
        self.shutdown()
        self.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Relays a request to S3 and its answer back; a client gone meanwhile (a killed worker
    whose request was held) gets no answer."""

    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args: object) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        is_part = self.command == "PUT" and "partNumber" in query and "uploadId" in query
        is_complete = self.command == "POST" and "uploadId" in query
        with self.server.lock:
            fail_part = False
            if is_part:
                self.server.upload_parts += 1
                every = self.server.fail_upload_part_every
                fail_part = bool(every) and self.server.upload_parts % every == 0
            lose = is_complete and self.server.lose_complete_answers > 0
            if lose:
                self.server.lose_complete_answers -= 1
            hold = is_complete and self.server.hold_completes > 0
            if hold:
                self.server.hold_completes -= 1
            fail_complete = is_complete and self.server.fail_completes > 0
            if fail_complete:
                self.server.fail_completes -= 1
            if fail_part or lose or fail_complete:
                self.server.injected += 1
        if fail_part or fail_complete:
            return self._error()
        if hold:
            self.server.holding.set()
            self.server.released.wait(timeout=300)
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        if lose:
            return self._error()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        # A HEAD answer has no body but the Content-Length of the object: pass it through.
        length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b"<Message>injected by the test's fault proxy</Message></Error>"
        )
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:  # BrokenPipeError, ConnectionResetError: the client died
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay
