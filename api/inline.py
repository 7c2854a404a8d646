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

from flask import Response, stream_with_context

from shared.db import connect_source, copy_blocks, process_label
from shared.filenames import content_disposition
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
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
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
        query, params = chunk_copy(spec.source, spec, None, None)
    except BaseException:
        close()
        raise

    def generate() -> Iterator[bytes]:
        try:
            yield header_bytes(spec)
            with conn.cursor() as cur:
                yield from (bytes(block) for block in copy_blocks(cur, query, params, BLOCK_BYTES))
        finally:
            close()

    try:
        response = Response(
            stream_with_context(generate()),
            status=200,
            mimetype="text/csv",
            headers={**headers, "X-Spillway-Rows": str(rows)},
        )
        response.call_on_close(close)
    except BaseException:
        close()
        raise
    return response
