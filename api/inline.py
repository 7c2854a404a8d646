"""The inline tier: a small export streamed as the HTTP response, in keyset chunks.

Invariant: the bytes are exactly those the async tier would store for the same request —
the same header and the same ``COPY`` per key range, concatenated.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, stream_with_context

from shared.db import connect_source, copy_blocks, process_label
from shared.filenames import content_disposition
from shared.planning import cut_plan
from shared.query import chunk_copy, header_bytes
from shared.settings import Settings
from shared.spec import ExportSpec

INLINE_CHUNK_BYTES = 1024 * 1024  # keyset chunks of about 1 MiB: short queries, steady flow
BLOCK_BYTES = 64 * 1024  # rows are sent in blocks of this size


def inline_response(settings: Settings, spec: ExportSpec) -> Response:
    """Plan the key ranges now (errors become a normal error answer), then stream them."""
    conn = connect_source(settings, process_label("api:inline"))
    try:
        plan = cut_plan(conn, spec.source, spec, INLINE_CHUNK_BYTES)
    except BaseException:
        conn.close()
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
            conn.close()

    return Response(
        stream_with_context(generate()),
        status=200,
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": content_disposition(spec.filename),
            "X-Spillway-Delivery": "inline",
            "X-Spillway-Rows": str(plan.total_rows),
        },
    )
