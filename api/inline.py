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
from itertools import count
from typing import Any

import psycopg
from flask import Response, stream_with_context

from shared.db import connect_source, copy_blocks, process_label
from shared.filenames import content_disposition
from shared.formats import Position, Workbook, XlsxEncoder, encoder
from shared.query import chunk_copy, header_bytes
from shared.settings import Settings
from shared.spec import ExportSpec

BLOCK_BYTES = 64 * 1024  # rows are sent in blocks of this size


def inline_response(settings: Settings, spec: ExportSpec, rows: int, release: Callable[[], None]) -> Response:
    """Stream the export's CSV as the response.

    Args:
        rows: the matching rows counted for the tier choice (the ``X-Spillway-Rows`` header).
        release: called exactly once when the response is done with the database (the read
            slot the caller took for it).
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
        release()
        raise
    done = {"closed": False}

    def close() -> None:
        if not done["closed"]:
            done["closed"] = True
            try:
                conn.close()
            finally:
                release()

    try:
        conn.autocommit = True  # the COPY is its own statement: no transaction outlives it
        body = file_bytes(conn, settings, spec)
    except BaseException:
        close()
        raise

    def generate() -> Iterator[bytes]:
        try:
            yield from body
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
    yield encode.begin()
    with conn.cursor() as cur:
        for block in copy_blocks(cur, query, params, BLOCK_BYTES):
            data = encode.feed(bytes(block))
            if data:
                yield data
    yield encode.end()


def _workbook_bytes(conn: psycopg.Connection[Any], settings: Settings, spec: ExportSpec) -> Iterator[bytes]:
    book = Workbook()
    rows_per_sheet = settings.xlsx_sheet_rows
    for index in count():
        query, params = chunk_copy(spec.source, spec, None, None, rows=(rows_per_sheet, index * rows_per_sheet))
        with conn.cursor() as cur:
            blocks = copy_blocks(cur, query, params, BLOCK_BYTES)
            first = next(blocks, None)
            if first is None and index > 0:
                break  # the rows ended with the previous sheet
            position = Position(first=index == 0, sheet=index + 1)
            encode = XlsxEncoder(spec.columns, position)
            size = 0
            for data in _chain(encode.begin(), first, blocks, encode):
                size += len(data)
                yield data
            rows = cur.rowcount
        yield book.after_chunk(position, size, encode.raw_size, encode.raw_crc32)
        if rows < rows_per_sheet:
            break
    yield book.trailer()


def _chain(begin: bytes, first: Any, blocks: Iterator[Any], encode: XlsxEncoder) -> Iterator[bytes]:
    yield begin
    if first is not None:
        yield encode.feed(bytes(first))
    for block in blocks:
        yield encode.feed(bytes(block))
    yield encode.end()
