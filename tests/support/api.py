"""Talking to the API as a test does: an owner's session on the Flask test client, downloads
through presigned URLs, and CSV parsing."""

from __future__ import annotations

import csv
import io
import sys
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.support.waiting import wait_for

csv.field_size_limit(sys.maxsize)  # uneven_rows has cells of ~300 KB


@dataclass
class ApiSession:
    """The Flask test client with an owner's key."""

    client: Any
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, **kwargs: Any):
        return self.client.post(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def export(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an async export; return its JSON."""
        response = self.post("/exports", json={**body, "delivery": "async"})
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.get_json()

    def status(self, export_id: str) -> dict[str, Any]:
        """The export's JSON as ``GET /exports/<id>`` answers it now."""
        return self.get(f"/exports/{export_id}").get_json()

    def wait(self, export_id: str, timeout: float = 300) -> dict[str, Any]:
        """Poll until the export is terminal; return its final JSON."""

        def terminal():
            body = self.status(export_id)
            return body if body["finished"] else None

        return wait_for(terminal, timeout=timeout, interval=0.1, what=f"export {export_id} to finish")

    def run(self, body: dict[str, Any], timeout: float = 300) -> tuple[dict[str, Any], bytes]:
        """Run an async export to completion and download it through its presigned URL."""
        done = self.wait(self.export(body)["id"], timeout)
        assert done["status"] == "completed", done
        return done, download(done["download"]["url"])

    def inline(self, body: dict[str, Any]) -> bytes:
        """Run an inline export; return the answer's bytes (the file)."""
        response = self.post("/exports", json={**body, "delivery": "inline"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()


def download(url: str) -> bytes:
    """GET a presigned URL (no credentials)."""
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def parse_csv(data: bytes) -> list[list[str]]:
    """Parse CSV bytes (UTF-8, optional BOM) into rows of strings, header included."""
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    return list(csv.reader(io.StringIO(text, newline="")))
