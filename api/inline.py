"""The inline tier: a small export streamed as the HTTP response, by one ``COPY``.

Invariant: the bytes are exactly those the async tier would store for the same request —
the same header and the same rendering query in key order (the async tier runs it per key
range and concatenates; an inline export has at most ``SPILLWAY_INLINE_MAX_ROWS`` rows, so
one statement reads them). Whatever happens — an
error while planning, a client that disconnects, a response that is never iterated — the
source connection is closed and the read slot given back when the response is closed, so no
connection is left ``idle in transaction``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from flask import Response, stream_with_context

from shared.db import CopyOut, connect_source, process_label
from shared.filenames import content_disposition
from shared.formats import Position, Workbook, XlsxEncoder, encoder
from shared.query import chunk_copy, header_bytes
from shared.settings import Settings
from shared.spec import ExportSpec

BLOCK_BYTES = 64 * 1024  # rows are sent in blocks of this size


def inline_response(settings: Settings, spec: ExportSpec, rows: int, release: Callable[[int], None]) -> Response:
    """Stream the export's CSV as the response.

    Args:
        rows: the matching rows counted for the tier choice (the ``X-Spillway-Rows`` header).
        release: called exactly once when the response is done with the database (the read
            slot the caller took for it), with the number of bytes sent (the key's inline bytes).
    """
    content_type = spec.output.content_type
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(spec.filename),
        "X-Spillway-Delivery": "inline",
    }
    try:
        conn = connect_source(settings, process_label("api:inline"))
    except BaseException:
        release(0)
        raise
    done = {"closed": False, "sent": 0}

    def close() -> None:
        if not done["closed"]:
            done["closed"] = True
            try:
                conn.close()
            finally:
                release(done["sent"])

    try:
        conn.autocommit = True  # the COPY is its own statement: no transaction outlives it
        body = file_bytes(conn, settings, spec)
    except BaseException:
        close()
        raise

    def generate() -> Iterator[bytes]:
        try:
            for piece in body:
                done["sent"] += len(piece)
                yield piece
        finally:
            close()

    try:
        response = Response(
            stream_with_context(generate()),
            status=200,
            content_type=content_type,
            headers={**headers, "X-Spillway-Rows": str(rows)},
        )
        response.call_on_close(close)
    except BaseException:
        close()
        raise
    return response


def file_bytes(conn: psycopg.Connection[Any], settings: Settings, spec: ExportSpec) -> Iterator[bytes]:
    """The export's file, as the async tier writes it for an export of inline size: one chunk
    (one gzip member), or for XLSX one chunk per sheet followed by the workbook's trailer."""
    if spec.format == "xlsx":
        yield from _workbook_bytes(conn, settings, spec)
        return
    query, params = chunk_copy(spec.source, spec, None, None)
    encode = encoder(spec.output, spec.columns, Position(), header_bytes(spec))
    yield bytes(encode.begin())
    for block in CopyOut(conn, query, params, BLOCK_BYTES):
        data = bytes(encode.feed(bytes(block)))  # bytes() of bytes is the object itself, no copy
        if data:
            yield data
    yield encode.end()


def _workbook_bytes(conn: psycopg.Connection[Any], settings: Settings, spec: ExportSpec) -> Iterator[bytes]:
    """One COPY (one snapshot, as the CSV's), cut into sheets of ``xlsx_sheet_rows`` rows: each
    rendered row is exactly one line (line breaks in text are escaped)."""
    sheets = _Sheets(spec.columns, settings.xlsx_sheet_rows)
    yield sheets.begin()
    query, params = chunk_copy(spec.source, spec, None, None)
    for block in CopyOut(conn, query, params, BLOCK_BYTES):
        yield from sheets.feed(bytes(block))
    yield from sheets.end()


class _Sheets:
    """Rows of an XLSX, one sheet after another, each sheet written as the async tier's one chunk of it."""

    def __init__(self, columns: tuple[str, ...], rows_per_sheet: int) -> None:
        self.columns, self.per_sheet, self.book = columns, rows_per_sheet, Workbook()
        self.position = Position(first=True, sheet=1)
        self.encode = XlsxEncoder(columns, self.position)
        self.rows = self.size = 0

    def _out(self, data: bytes) -> bytes:
        self.size += len(data)
        return data

    def begin(self) -> bytes:
        return self._out(self.encode.begin())

    def _close(self) -> bytes:
        tail = self._out(self.encode.end())
        return tail + self.book.after_chunk(self.position, self.size, self.encode.raw_size, self.encode.raw_crc32)

    def feed(self, data: bytes) -> Iterator[bytes]:
        start = 0
        while start < len(data):
            if self.rows == self.per_sheet:  # full, and more rows follow: the next sheet
                yield self._close()
                sheet = (self.position.sheet or 1) + 1
                self.position = Position(first=False, sheet=sheet)
                self.encode, self.rows, self.size = XlsxEncoder(self.columns, self.position), 0, 0
                yield self.begin()
            cut, wanted = start, self.per_sheet - self.rows
            while wanted and (found := data.find(b"\n", cut)) >= 0:
                cut, wanted = found + 1, wanted - 1
            if not wanted:
                self.rows = self.per_sheet
            else:  # the rest of the block fits this sheet
                cut = len(data)
                self.rows = self.per_sheet - wanted
            yield self._out(self.encode.feed(data[start:cut]))
            start = cut

    def end(self) -> Iterator[bytes]:
        yield self._close()
        yield self.book.trailer()
