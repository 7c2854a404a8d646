"""Formats: gzip-compressed CSV and JSON Lines, JSON Lines, XLSX — every type in every format,
both tiers byte-identical, sheets past the sheet limit, a file a spreadsheet application opens.

Expected values are computed from what psycopg reads (tests/support/rendering.py), not by
Spillway's SQL; XLSX files are read back with openpyxl and LibreOffice, not with our writer.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
import yaml

from api import create_app
from shared.crc import crc32_hex
from shared.datasets import install
from shared.datasets import load as load_datasets
from shared.formulas import neutralize
from shared.settings import Settings
from tests.support.api import ApiSession
from tests.support.rendering import NOT_A_NUMBER, json_value, render, source_rows
from tests.support.state import chunk_rows
from tests.support.workers import WorkerPool

PRODUCT_ROWS = 1_000_000

TABLE = "shop.orders"
ORDERS = [  # every column of the orders dataset, in table order
    "id", "code", "tenant_id", "status", "quantity", "small", "big", "amount", "ratio", "score", "paid",
    "customer", "country", "email", "placed_on", "placed_at", "paid_at", "pickup", "window_length", "details",
    "payload", "signature", "tags", "line_counts", "client_ip", "network", "device", "notes",
]  # fmt: skip
# About 1/32 of the uuid key space (~9,400 rows, each edge value about 9 times): inline size.
SLICE = {"id": {"lt": "08000000-0000-0000-0000-000000000000"}}
SLICE_SQL = "id < '08000000-0000-0000-0000-000000000000'"
FORMATS = [
    {"format": "csv", "compression": "gzip"},
    {"format": "jsonl"},
    {"format": "jsonl", "compression": "gzip"},
    {"format": "xlsx"},
]
EXCEL_EPOCH = datetime(1899, 12, 31)  # what openpyxl counts a time past 24 hours from
_OOXML = re.compile("_(?=x[0-9A-Fa-f]{4}_)|[\x01-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def format_id(extra: dict[str, str]) -> str:
    return "+".join(extra.values())


@pytest.mark.parametrize("extra", FORMATS, ids=format_id)
def test_inline_and_async_are_byte_identical(api, extra):
    body = {"dataset": "orders", "filters": SLICE, **extra}
    inline = api.inline(body)
    done, data = api.run(body)
    assert data == inline
    assert done["checksum"]["value"] == crc32_hex(zlib.crc32(data))
    assert done["object_bytes"] == len(data)


def test_json_lines_hold_every_type_as_json(api, seeded):
    """One object per line, keys in the requested order, numbers as numbers, JSON nested,
    timestamps as ISO 8601 strings, NULL as null; formulas are not neutralised."""
    columns = list(reversed(ORDERS))  # the requested order, not the table's
    done, data = api.run({"dataset": "orders", "filters": SLICE, "columns": columns, "format": "jsonl"})
    assert done["filename"] == "orders.jsonl"
    kinds, rows = source_rows(seeded, TABLE, "id", columns, SLICE_SQL)
    lines = data.split(b"\n")
    assert lines.pop() == b"" and len(lines) == len(rows) == done["progress"]["rows_done"]
    for line, row in zip(lines, rows, strict=True):
        got = json.loads(line, parse_float=Decimal)
        assert list(got) == columns
        want = {c: json_value(base, v, is_array) for c, (base, is_array), v in zip(columns, kinds, row, strict=True)}
        assert got == want, [(c, got[c], want[c]) for c in columns if got[c] != want[c]][:3]
    assert any(isinstance(json.loads(line)["details"], dict) for line in lines)
    texts = [json.loads(line)["notes"] for line in lines]
    assert any(t and t.startswith("=") for t in texts), "a formula-like text stays as it is in JSON"


def _ooxml_view(text: str) -> str:
    """Text as openpyxl gives back an inline string Excel would decode: openpyxl leaves the
    ``_xHHHH_`` escapes of characters XML cannot hold (and of a literal ``_xHHHH_``) as they are."""
    return _OOXML.sub(lambda m: "_x005F_" if m.group() == "_" else f"_x{ord(m.group()):04X}_", text)


def _in_excel_range(text: str) -> bool:
    """Whether a date or timestamp's text falls in Excel's dates: 1900-03-01 to 9999-12-31."""
    return not text.endswith(" BC") and "infinity" not in text and len(text.split("-")[0]) == 4 and text >= "1900-03-01"


def _excel_stamp(text: str) -> datetime | None:
    """A timestamp's text as the naive UTC datetime Excel holds, or None outside Excel's range."""
    if not _in_excel_range(text):
        return None
    stamp = datetime.fromisoformat(text)
    return stamp.astimezone(UTC).replace(tzinfo=None) if stamp.tzinfo else stamp


def expected_cell(base: str, value: Any, is_array: bool) -> tuple[type, Any]:
    """What openpyxl should read for one source value: (type, value)."""
    if value is None:
        return type(None), None
    if not is_array and base in ("int2", "int4", "int8"):
        return (int, value) if abs(value) < 10**15 else (str, str(value))
    if not is_array and base in ("numeric", "float4", "float8"):
        text = render(base, value, False) or ""
        if text in NOT_A_NUMBER or (base == "numeric" and abs(Decimal(text)) >= 10**15):
            return str, text  # Excel would round a numeric of 16 digits or more
        return float, float(Decimal(text))
    if not is_array and base == "bool":
        return bool, value
    if not is_array and base == "date":
        return (datetime, datetime.fromisoformat(value)) if _in_excel_range(value) else (str, value)
    if not is_array and base in ("timestamp", "timestamptz"):
        stamp = _excel_stamp(value)
        return (str, render(base, value, False)) if stamp is None else (datetime, stamp)
    if not is_array and base == "time":
        h, m, s = value.split(":")
        return timedelta, timedelta(hours=int(h), minutes=int(m), seconds=float(s))
    return str, _ooxml_view(render(base, value, False, is_array) or "")


def _as_read(kind: type, got: Any) -> Any:
    """openpyxl's value in the form :func:`expected_cell` gives."""
    if kind is float and isinstance(got, int) and not isinstance(got, bool):
        return float(got)
    if kind is timedelta and isinstance(got, time):
        return timedelta(hours=got.hour, minutes=got.minute, seconds=got.second, microseconds=got.microsecond)
    if kind is timedelta and isinstance(got, datetime):
        return got - EXCEL_EPOCH
    return got


def _matches(kind: type, want: Any, got: Any) -> bool:
    got = _as_read(kind, got)
    if kind in (datetime, timedelta):
        return isinstance(got, type(want)) and abs(got - want) <= timedelta(milliseconds=1)
    return type(got) is kind and got == want


def test_xlsx_types_values_and_formula_text(api, seeded, tmp_path):
    done, data = api.run({"dataset": "orders", "filters": SLICE, "format": "xlsx"})
    assert done["filename"] == "orders.xlsx"
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Sheet1"]
    sheet = book["Sheet1"]
    kinds, rows = source_rows(seeded, TABLE, "id", ORDERS, SLICE_SQL)
    cells = list(sheet.iter_rows())
    assert [c.value for c in cells[0]] == ORDERS and all(c.font.b for c in cells[0])
    assert len(cells) - 1 == len(rows) == done["progress"]["rows_done"]
    quoted = 0
    for line, row in zip(cells[1:], rows, strict=True):
        assert len(line) == len(ORDERS)
        for name, cell, (base, is_array), value in zip(ORDERS, line, kinds, row, strict=True):
            kind, want = expected_cell(base, value, is_array)
            assert _matches(kind, want, cell.value), (name, value, cell.value)
            if kind is str and base in ("text", "varchar", "citext", "enum"):
                dangerous = neutralize(value) != value
                assert cell.quotePrefix == dangerous, (name, value)
                quoted += dangerous
            if kind is datetime:
                assert cell.is_date
    assert quoted > 0, "the sample holds formula-like text"


def test_xlsx_without_neutralisation_has_no_quote_prefix(api):
    body = {"dataset": "orders", "filters": SLICE, "columns": ["id", "notes"], "format": "xlsx"}
    data = api.inline({**body, "xlsx": {"neutralize_formulas": False}})
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert not any(c.quotePrefix for row in book.active.iter_rows() for c in row)


def test_libreoffice_opens_the_xlsx(api, seeded, tmp_path):
    """A real spreadsheet application: LibreOffice converts the file to CSV without error."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    assert soffice, "LibreOffice is installed by `make test` (deploy/test_tools.py)"
    columns = ["id", "code", "quantity", "amount", "paid", "placed_on", "notes"]
    data = api.inline({"dataset": "orders", "filters": SLICE, "columns": columns, "format": "xlsx"})
    path = tmp_path / "orders.xlsx"
    path.write_bytes(data)
    done = subprocess.run(
        [soffice, f"-env:UserInstallation=file://{tmp_path}/lo-profile", "--headless",
         "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1", "--outdir", str(tmp_path), str(path)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    converted = tmp_path / "orders.csv"
    assert converted.exists(), (done.stdout, done.stderr)
    table = list(csv.reader(io.StringIO(converted.read_text(encoding="utf-8"), newline="")))
    kinds, rows = source_rows(seeded, TABLE, "id", columns, SLICE_SQL)
    assert table[0] == columns
    assert len(table) - 1 == len(rows)
    assert [r[0] for r in table[1:]] == [str(row[0]) for row in rows]  # every row, in key order


@contextmanager
def own_stack(settings: Settings, key: str) -> Iterator[ApiSession]:
    """Two workers and an API on ``settings`` (its own queues), as ``key``'s owner."""
    pool = WorkerPool(settings)
    pool.start(2)
    app = create_app(settings)
    try:
        yield ApiSession(app.test_client(), key)
    finally:
        app.extensions["spillway"].close()
        pool.stop()


@pytest.fixture(scope="module")
def small_sheets(settings, seeded, bucket, redis, keys) -> Iterator[ApiSession]:
    """Workers and an API whose sheets hold 3,000 rows (Excel's are 1,048,575)."""
    with own_stack(
        settings.replace(xlsx_sheet_rows=3000, xlsx_max_rows=300_000, queue_prefix="sheets"), keys["alice"]
    ) as api:
        yield api


def test_rows_past_a_sheet_continue_on_the_next_sheet(small_sheets, settings, seeded):
    """20,000 rows with 3,000 a sheet: seven sheets, each with its header, no row lost or cut."""
    columns = ["id", "label"]
    done, data = small_sheets.run({"dataset": "uneven_rows", "columns": columns, "format": "xlsx"})
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == [f"Sheet{n}" for n in range(1, 8)]
    _, rows = source_rows(seeded, "public.uneven_rows", "id", columns)
    got: list[Any] = []
    for n, sheet in enumerate(book.worksheets):
        values = list(sheet.iter_rows(values_only=True))
        assert list(values[0]) == columns
        assert len(values) - 1 == (3000 if n < 6 else 2000)
        got.extend(v[0] for v in values[1:])
    assert got == [row[0] for row in rows]
    sheets = {c["layout"]["sheet"] for c in chunk_rows(settings, done["id"])}
    assert sheets == set(range(1, 8))


@pytest.mark.parametrize("last_id, sheets", [(7500, 3), (6000, 2), (0, 1)], ids=["7500-rows", "6000-rows", "empty"])
def test_inline_xlsx_over_several_sheets_is_the_async_file(small_sheets, last_id, sheets):
    """Sheets of 3,000 rows: a partial last sheet, an exact multiple (no empty third sheet), no rows."""
    body = {"dataset": "uneven_rows", "columns": ["id", "label"], "format": "xlsx", "filters": {"id": {"lte": last_id}}}
    inline = small_sheets.inline(body)
    _, data = small_sheets.run(body)
    assert inline == data
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == [f"Sheet{n}" for n in range(1, sheets + 1)]
    assert sum(len(list(ws.iter_rows())) - 1 for ws in book.worksheets) == last_id


def test_xlsx_over_the_maximum_answers_400_naming_it(api, settings):
    small = create_app(settings.replace(xlsx_max_rows=1000))
    try:
        response = small.test_client().post(
            "/exports", json={"dataset": "uneven_rows", "format": "xlsx"}, headers=api.headers
        )
    finally:
        small.extensions["spillway"].close()
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "format" and "SPILLWAY_XLSX_MAX_ROWS" in error["message"]


def test_gzip_of_one_million_rows_is_the_csv(api, settings):
    """Several gzip members (one per chunk), one valid gzip file: exactly the CSV's bytes."""
    _, plain = api.run({"dataset": "products"})
    done, data = api.run({"dataset": "products", "compression": "gzip"})
    assert done["filename"] == "products.csv.gz"
    assert gzip.decompress(data) == plain
    assert len(chunk_rows(settings, done["id"])) > 1
    members = data.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00")  # gzip header, no name, mtime 0
    assert members >= len(chunk_rows(settings, done["id"]))


SAME_ROWS = 3_000_000


@pytest.fixture(scope="module")
def same_rows(settings, seeded, bucket, redis, keys, tmp_path_factory) -> Iterator[ApiSession]:
    """A table of 3,000,000 rows of identical values (but the key) as a dataset of its own: a
    datasets file of the shipped ones plus it, with workers and an API on it."""
    with psycopg.connect(settings.source_database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.same_rows")
        conn.execute(
            "CREATE TABLE public.same_rows AS SELECT g AS id, 'the same text in every row'::text AS label,"
            " 42 AS answer FROM generate_series(1, %s) g",
            (SAME_ROWS,),
        )
        conn.execute("ALTER TABLE public.same_rows ADD PRIMARY KEY (id)")
        conn.execute("ANALYZE public.same_rows")
    shipped = yaml.safe_load(Path(settings.datasets_file).read_text())
    shipped["datasets"]["same_rows"] = {"table": "public.same_rows", "key": "id"}
    path = tmp_path_factory.mktemp("datasets") / "datasets.yml"
    path.write_text(yaml.safe_dump(shipped))
    with own_stack(settings.replace(datasets_file=str(path), queue_prefix="same-rows"), keys["alice"]) as api:
        yield api
    install(load_datasets(settings))  # the shipped registry again, for the tests after these
    with psycopg.connect(settings.source_database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE public.same_rows")


def test_gzip_of_millions_of_identical_rows_completes(same_rows, settings):
    """Identical lines: every chunk compresses to a few KB, far below S3's 5 MiB part minimum,
    and the finalizer joins them into the object's parts."""
    body = {"dataset": "same_rows", "columns": ["label", "answer"], "compression": "gzip"}
    done, data = same_rows.run(body, timeout=600)
    parts = chunk_rows(settings, done["id"])
    assert len(parts) > 1 and all(p["bytes"] < 500_000 for p in parts), [p["bytes"] for p in parts]
    text = gzip.decompress(data)
    assert text == b"label,answer\n" + b"the same text in every row,42\n" * SAME_ROWS
    assert done["progress"]["rows_done"] == SAME_ROWS
    assert len(data) < len(text) / 200  # deflate stops near 1:1000; gzip level 6 makes ~1:400 here


def test_json_lines_of_one_million_rows_equal_the_source(api, seeded):
    done, data = api.run({"dataset": "products", "format": "jsonl"})
    columns = done["request"]["columns"]
    kinds, rows = source_rows(seeded, "public.products", "id", columns)
    lines = data.split(b"\n")
    assert lines.pop() == b"" and len(lines) == len(rows) == PRODUCT_ROWS
    for line, row in zip(lines, rows, strict=True):
        want = {c: json_value(base, v, is_array) for c, (base, is_array), v in zip(columns, kinds, row, strict=True)}
        assert json.loads(line, parse_float=Decimal) == want


def test_xlsx_of_one_million_rows_reads_back(api, seeded):
    """openpyxl reads every row of a 1,000,000-row workbook back (three columns: openpyxl reads
    ~60,000 cells a second, so all columns would take minutes; every type is checked above)."""
    columns = ["id", "name", "price"]
    done, data = api.run({"dataset": "products", "columns": columns, "format": "xlsx"})
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    kinds, rows = source_rows(seeded, "public.products", "id", columns)
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == ["Sheet1"]
    values = book["Sheet1"].iter_rows(values_only=True)
    assert list(next(values)) == columns
    count = 0
    for got, row in zip(values, rows, strict=True):
        for (base, is_array), value, cell in zip(kinds, row, got, strict=True):
            kind, want = expected_cell(base, value, is_array)
            assert _matches(kind, want, cell), (row, got)
        count += 1
    assert count == PRODUCT_ROWS == done["progress"]["rows_done"]
