"""The export pipeline end to end: real Postgres, Redis, S3 and worker processes.

The expected rows are rendered here in Python, independently of the SQL that produces the
CSV, from a plain ``SELECT ... ORDER BY id``.
"""

from __future__ import annotations

import json
from datetime import UTC
from decimal import Decimal

import psycopg
import pytest

from shared import formulas
from shared.settings import S3_MIN_PART_BYTES
from shared.storage import s3_client
from tests.support.api import parse_csv
from tests.support.state import chunk_rows

ALL_COLUMNS = ["id", "sku", "name", "description", "category", "status", "price", "quantity"]
ALL_COLUMNS += ["tags", "tenant_id", "created_at", "updated_at"]


def render(value, neutralize: bool = True) -> str:
    """How a value must look in the CSV (after CSV parsing)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return formulas.neutralize(value) if neutralize else value  # its payloads: tests/unit/test_formulas.py
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "astimezone"):
        # RFC 3339 in UTC; the fraction without trailing zeros, none when it is zero.
        stamp = value.astimezone(UTC)
        whole = stamp.strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f"{stamp.microsecond:06d}".rstrip("0")
        return f"{whole}.{fraction}+00:00" if fraction else f"{whole}+00:00"
    return str(value)


def expected_rows(
    db: str, columns: list[str], where: str = "TRUE", params: tuple = (), neutralize: bool = True
) -> list[list[str]]:
    select = ", ".join(columns)
    with psycopg.connect(db) as conn:
        cur = conn.execute(f"SELECT {select} FROM products WHERE {where} ORDER BY id", params)
        return [[render(v, neutralize) for v in row] for row in cur]


@pytest.mark.slow
def test_million_row_export_is_exactly_the_table(api, seeded, settings):
    done, data = api.run({"dataset": "products"})
    rows = parse_csv(data)
    assert rows[0] == ALL_COLUMNS
    expected = expected_rows(seeded, ALL_COLUMNS)
    assert len(rows) - 1 == len(expected) == 1_000_000
    keys = [int(r[0]) for r in rows[1:]]
    assert keys == sorted(set(keys)), "keys must be unique and in order"
    for got, want in zip(rows[1:], expected, strict=True):
        assert got == want
    parts_total = done["progress"]["parts_total"]
    assert done["progress"] == {
        "total_rows": 1_000_000,
        "rows_done": 1_000_000,
        "parts_total": parts_total,
        "parts_done": parts_total,
        "bytes_done": len(data),
        "percent": 100.0,
    }
    assert done["object_bytes"] == len(data)
    # Every non-last part clears S3's minimum; together they are the object.
    parts = chunk_rows(settings, done["id"])
    assert len(parts) == done["progress"]["parts_total"] > 1
    assert all(p["bytes"] >= S3_MIN_PART_BYTES for p in parts[:-1])
    assert sum(p["bytes"] for p in parts) == len(data)


def test_hostile_values_survive_byte_for_byte(api, seeded):
    """Quotes, commas, CR/LF, non-ASCII, formulas, empty vs NULL: checked on the raw bytes."""
    with psycopg.connect(seeded) as conn:

        def first(where: str) -> int:
            return conn.execute(f"SELECT min(id) FROM products WHERE {where}").fetchone()[0]

        ids = {
            "crlf": first("name LIKE E'%\\r\\n%'"),
            "quote": first("name LIKE '%\"%'"),
            "formula": first("name LIKE '=%'"),
            "emoji": first("name ~ '[\\U0001F300-\\U0001FAFF]'"),
            "cjk": first("name ~ '[\\u3040-\\u30ff\\u4e00-\\u9fff]'"),
            "empty": first("description = ''"),
            "null": first("description IS NULL"),
        }
        assert all(ids.values()), ids
        raw = {
            k: conn.execute("SELECT name, description FROM products WHERE id = %s", (v,)).fetchone()
            for k, v in ids.items()
        }
    body = {
        "dataset": "products",
        "columns": ["id", "name", "description"],
        "filters": {"id": {"in": sorted(ids.values())}},
    }
    data = api.inline(body)
    text = data.decode()
    # CR LF and quotes stay inside a quoted field, quotes doubled (RFC 4180).
    assert '"' + raw["crlf"][0].replace('"', '""') + '"' in text
    assert '"' + raw["quote"][0].replace('"', '""') + '"' in text
    parsed = {int(r[0]): r for r in parse_csv(data)[1:]}
    assert set(parsed) == set(ids.values())
    for kind, key in ids.items():
        assert parsed[key][1:] == [render(v) for v in raw[kind]], kind
    assert parsed[ids["formula"]][1].startswith("'=")  # neutralised with a leading quote
    # Empty string is a quoted empty field; NULL is nothing at all.
    row_empty = [line for line in data.split(b"\n") if line.startswith(f"{ids['empty']},".encode())][0]
    row_null = [line for line in data.split(b"\n") if line.startswith(f"{ids['null']},".encode())][0]
    assert row_empty.endswith(b',""') and row_null.endswith(b",")


def test_neutralisation_can_be_turned_off(api, seeded):
    with psycopg.connect(seeded) as conn:
        formula_id, name = conn.execute(
            "SELECT id, name FROM products WHERE name LIKE '=%' ORDER BY id LIMIT 1"
        ).fetchone()
    body = {"dataset": "products", "columns": ["name"], "filters": {"id": {"eq": formula_id}}}
    assert parse_csv(api.inline(body))[1] == ["'" + name]
    off = {**body, "csv": {"neutralize_formulas": False}}
    assert parse_csv(api.inline(off))[1] == [name]


FILTERED = {
    "dataset": "products",
    "columns": ["price", "name", "id", "category"],
    "filters": {"category": {"in": ["books", "toys"]}, "price": {"gte": 10, "lt": 2000}, "name": {"contains": "PRO"}},
}
FILTERED_SQL = (
    "category = ANY(%s) AND price >= 10 AND price < 2000 AND strpos(lower(name), lower(%s)) > 0",
    (["books", "toys"], "PRO"),
)


def test_filtered_export_is_exactly_the_sql_and_the_columns_asked(api, seeded):
    done, data = api.run(FILTERED)
    rows = parse_csv(data)
    assert rows[0] == ["price", "name", "id", "category"]
    expected = expected_rows(seeded, ["price", "name", "id", "category"], *FILTERED_SQL)
    assert len(expected) > 100
    assert rows[1:] == expected
    assert done["progress"]["total_rows"] == len(expected) and done["progress"]["percent"] == 100.0


def test_inline_and_async_are_byte_identical(api, seeded):
    body = {**FILTERED, "csv": {"bom": True}}
    inline = api.inline(body)
    _, stored = api.run(body)
    assert inline.startswith(b"\xef\xbb\xbf")
    assert inline == stored
    timestamps = {
        "dataset": "products",
        "columns": ["id", "tags", "created_at", "updated_at", "description"],
        "filters": {"id": {"gt": 500, "lte": 6500}},
    }
    assert api.inline(timestamps) == api.run(timestamps)[1]


def test_empty_export_is_just_the_header(api, seeded):
    body = {"dataset": "products", "columns": ["id", "name"], "filters": {"name": {"eq": "no such name"}}}
    done, data = api.run(body)
    assert data == b"id,name\n" == api.inline(body)
    assert done["progress"]["total_rows"] == 0 and done["progress"]["percent"] == 100.0


def test_uneven_row_widths_keep_every_non_last_part_above_5_mib(api, seeded, settings):
    done, data = api.run({"dataset": "uneven_rows"})
    parts = chunk_rows(settings, done["id"])
    sizes = [p["bytes"] for p in parts]
    assert len(sizes) > 2
    assert all(size >= S3_MIN_PART_BYTES for size in sizes[:-1]), sizes
    assert sum(sizes) == len(data) == done["object_bytes"]
    with psycopg.connect(seeded) as conn:
        count = conn.execute("SELECT count(*) FROM uneven_rows").fetchone()[0]
    assert len(parse_csv(data)) - 1 == count
    key = f"{settings.s3_prefix}{done['id']}/uneven_rows.csv"
    head = s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=key)
    assert head["ContentLength"] == len(data)
