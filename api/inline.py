"""The inline tier: a small export streamed as the HTTP response, in keyset chunks.

Invariant: the bytes are exactly those the async tier would store for the same request —
the same header and the same ``COPY`` per key range, concatenated. Whatever happens — an
error while planning, a client that disconnects, a response that is never iterated — the
source connection is closed and the read slot given back when the response is closed, so no
connection is left ``idle in transaction``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Response, stream_with_context

from shared.db import connect_source, copy_blocks, process_label
from shared.filenames import content_disposition
from shared.planning import cut_plan
from shared.query import chunk_copy, header_bytes
from shared.settings import Settings
from shared.spec import ExportSpec

INLINE_CHUNK_BYTES = 1024 * 1024  # keyset chunks of about 1 MiB: short queries, steady flow
BLOCK_BYTES = 64 * 1024  # rows are sent in blocks of this size


def inline_response(settings: Settings, spec: ExportSpec, release: Callable[[], None]) -> Response:
    """Plan the key ranges now (errors become a normal error answer), then stream them.

    Args:
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
        conn.autocommit = True  # each range is its own short statement: no transaction outlives a COPY
        plan = cut_plan(conn, spec.source, spec, INLINE_CHUNK_BYTES)
    except BaseException:
        close()
        raise

    def generate() -> Iterator[bytes]:
        try:
            yield header_bytes(spec)
            for chunk in plan.chunks:
                if chunk.rows == 0:
                    continue
                query, params = chunk_copy(spec.source, spec, chunk.lo, chunk.hi)
                with conn.cursor() as cur:
                    yield from (bytes(block) for block in copy_blocks(cur, query, params, BLOCK_BYTES))
        finally:
            close()

    try:
        response = Response(
            stream_with_context(generate()),
            status=200,
            mimetype="text/csv",
            headers={**headers, "X-Spillway-Rows": str(plan.total_rows)},
        )
        response.call_on_close(close)
    except BaseException:
        close()
        raise
    return response
