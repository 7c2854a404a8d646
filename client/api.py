"""HTTP access to the Spillway API and to presigned download URLs, with urllib only.

Invariant: the API key is sent only to the configured API base URL. :class:`ApiClient`
never follows a redirect (a 3xx comes back to the caller as a response), and presigned
URLs are fetched by :func:`fetch_to_file` with a fresh request that has no Authorization
header, so the key never reaches S3 or any other host.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_S = 60.0  # longest wait for one socket read; inline bodies arrive in blocks well within it
BLOCK_BYTES = 1024 * 1024  # downloads are copied in 1 MiB blocks: bounded memory, few syscalls
ERROR_BODY_LIMIT = 64 * 1024  # read at most this much of an error answer
USER_AGENT = "spillway-client/1"

ProgressCallback = Callable[[int, "int | None"], None]  # (bytes so far, total bytes or None)


class ApiError(Exception):
    """The API answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the API's error code (``http_<status>`` when the body was not the API's JSON).
        message: the API's message, naming the problem.
        field: the part of the request at fault, when the API named one.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.message} (field: {self.field})" if self.field else self.message


class CancelUnsupportedError(ApiError):
    """The export exists but this server has no ``POST /exports/<id>/cancel`` yet."""


class ApiConnectionError(Exception):
    """The API, or the download host, could not be reached at all."""


class DownloadError(Exception):
    """A presigned download failed (expired or bad signature, missing object, cut short)."""


class _ReturnEveryResponse(urllib.request.HTTPErrorProcessor):
    """Hand back every response as it is: no exception for 4xx/5xx, no redirect following."""

    def http_response(self, request: urllib.request.Request, response: Any) -> Any:
        return response

    https_response = http_response


def _error_from_body(status: int, reason: str, raw: bytes) -> ApiError:
    try:
        error = json.loads(raw)["error"]
        return ApiError(
            status, str(error.get("code") or f"http_{status}"), str(error.get("message") or reason), error.get("field")
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        snippet = raw.decode("utf-8", "replace").strip()[:200]
        return ApiError(status, f"http_{status}", f"HTTP {status} {reason}" + (f": {snippet}" if snippet else ""))


class ApiClient:
    """A Spillway API endpoint and the key to call it with.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` (a trailing slash is ignored).
        key: the API key, sent as ``Authorization: Bearer <key>``.
        timeout: seconds one socket operation may wait.
    """

    def __init__(self, base_url: str, key: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_ReturnEveryResponse)

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        """The absolute URL of an API path."""
        return self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def open(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None, auth: bool = True
    ) -> http.client.HTTPResponse:
        """Send one request and return the open response (2xx or 3xx) for the caller to read.

        Raises:
            ApiError: the answer was 4xx or 5xx.
            ApiConnectionError: nothing answered at the base URL.
        """
        headers = {"Accept": "application/json, text/csv", "User-Agent": USER_AGENT}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.url(path, query), data=data, headers=headers, method=method)
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except OSError as exc:  # URLError, refused, reset, DNS, timeout
            reason = getattr(exc, "reason", exc)
            raise ApiConnectionError(f"cannot reach the Spillway API at {self.base_url}: {reason}") from None
        if response.status >= 400:
            with response:
                raw = response.read(ERROR_BODY_LIMIT)
            raise _error_from_body(response.status, response.reason, raw)
        return response

    def request_json(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """Send one request and decode its JSON answer."""
        with self.open(method, path, body, query) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(
                response.status, "bad_response", f"{method} {path} answered {response.status} without JSON"
            ) from None

    def datasets(self) -> list[dict[str, Any]]:
        """``GET /datasets``: the exportable datasets with their columns."""
        return self.request_json("GET", "/datasets")["datasets"]

    def get_export(self, export_id: str) -> dict[str, Any]:
        """``GET /exports/<id>``: status, progress and, when completed, a download URL."""
        return self.request_json("GET", f"/exports/{_segment(export_id)}")

    def list_exports(self, limit: int = 20) -> dict[str, Any]:
        """``GET /exports``: the caller's newest exports."""
        return self.request_json("GET", "/exports", query={"limit": limit})

    def cancel_export(self, export_id: str) -> dict[str, Any]:
        """``POST /exports/<id>/cancel``.

        Raises:
            CancelUnsupportedError: the export exists but the server has no cancel endpoint.
            ApiError: anything else the API refused (e.g. 404 for an unknown export).
        """
        path = f"/exports/{_segment(export_id)}/cancel"
        try:
            return self.request_json("POST", path)
        except ApiError as exc:
            if exc.status == 405 or (exc.status == 404 and self._exists(export_id)):
                raise CancelUnsupportedError(
                    exc.status,
                    "cancel_unsupported",
                    f"this server does not support cancelling exports yet (POST {path} answered "
                    f"{exc.status}); export {export_id} keeps running",
                ) from None
            raise

    def _exists(self, export_id: str) -> bool:
        try:
            self.get_export(export_id)
        except ApiError:
            return False
        return True

    def health(self) -> tuple[int, dict[str, Any]]:
        """``GET /health`` (no key needed): the status code and the body, even when 503."""
        try:
            with self.open("GET", "/health", auth=False) as response:
                return response.status, json.loads(response.read())
        except ApiError as exc:
            return exc.status, {"status": "unavailable", "error": exc.message}


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def save_body(response: Any, path: Path, total: int | None = None, on_progress: ProgressCallback | None = None) -> int:
    """Copy a response body to ``path`` in 1 MiB blocks via ``<path>.part``; return the bytes written.

    The partial file is removed if the copy fails or is interrupted, so ``path`` only ever
    holds a complete body.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    written = 0
    try:
        with open(partial, "wb") as out:
            while block := response.read(BLOCK_BYTES):
                out.write(block)
                written += len(block)
                if on_progress:
                    on_progress(written, total)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def _s3_message(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    found = re.search(r"<Code>(.*?)</Code>.*?<Message>(.*?)</Message>", text, re.S)
    return f"{found.group(1)}: {found.group(2)}" if found else text.strip()[:200]


def fetch_to_file(
    url: str, path: Path, on_progress: ProgressCallback | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> int:
    """Download a presigned URL to ``path`` without any credentials; return the bytes written.

    Raises:
        DownloadError: the storage refused the URL, or sent fewer bytes than it announced.
        ApiConnectionError: the storage host could not be reached.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # no Authorization, on purpose
    host = urllib.parse.urlsplit(url).netloc
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"download from {host} failed: HTTP {exc.code} {_s3_message(exc.read(ERROR_BODY_LIMIT))}"
        ) from None
    except OSError as exc:
        raise ApiConnectionError(f"cannot reach the download host {host}: {getattr(exc, 'reason', exc)}") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        try:
            written = save_body(response, path, total, on_progress)
        except http.client.IncompleteRead as exc:
            raise DownloadError(f"download from {host} was cut short after {len(exc.partial)} bytes") from None
    if total is not None and written != total:
        path.unlink(missing_ok=True)
        raise DownloadError(f"download from {host} gave {written} bytes, Content-Length said {total}")
    return written
