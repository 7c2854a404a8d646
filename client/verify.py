"""Checking a downloaded file against what the API said it holds.

Invariant: records are counted the way a reader of the format sees them, never by counting
bytes: a CSV by RFC 4180 quoting (a CR or LF inside a quoted field does not start a record;
a UTF-8 BOM is not data; the header row is not a record), JSON Lines by parsing every line as
a JSON object, an XLSX by testing its ZIP entries' CRCs and counting each sheet's ``<row>``
elements past its header; a gzip file is decompressed on the fly. A file that is not
well-formed fails the check instead of producing a count. The checksum is computed over the
file's bytes as read back from disk, every byte, exactly as stored.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from xml.etree.ElementTree import ParseError, iterparse

FIELD_SIZE_LIMIT = 1 << 30  # the csv module's default (128 KiB) is below some legitimate cells
READ_BLOCK_BYTES = 1024 * 1024  # the checksum reads the file in blocks of this size: bounded memory


class CsvCheckError(ValueError):
    """The file is not UTF-8 CSV as Spillway writes it; the message says where."""


_SHEET = re.compile(r"xl/worksheets/sheet([0-9]+)\.xml")
_ROW_TAG = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}row"


def file_kind(name: str) -> tuple[str, bool]:
    """``(format, gzipped)`` from a file name's extension (``x.csv.gz`` → ``("csv", True)``); CSV by default."""
    lower = name.lower()
    gzipped = lower.endswith(".gz")
    stem = lower[:-3] if gzipped else lower
    for fmt in ("jsonl", "xlsx"):
        if stem.endswith(f".{fmt}"):
            return fmt, gzipped
    return "csv", gzipped


def _open_binary(path: Path, gzipped: bool) -> IO[bytes]:
    return cast(IO[bytes], gzip.open(path, "rb")) if gzipped else open(path, "rb")


def count_csv_records(path: Path, gzipped: bool = False) -> int:
    """Count the data records of a CSV file with a header row.

    Args:
        path: a UTF-8 CSV file, optionally starting with a BOM (gzip-compressed if ``gzipped``).

    Returns:
        The number of records after the header (0 for an empty file or a header alone).

    Raises:
        CsvCheckError: the file is not valid UTF-8 or not well-formed CSV (or gzip).
    """
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    records = 0
    try:
        with io.TextIOWrapper(_open_binary(path, gzipped), newline="", encoding="utf-8-sig") as handle:
            for _ in csv.reader(handle, strict=True):
                records += 1
    except UnicodeDecodeError as exc:
        raise CsvCheckError(f"{path} is not valid UTF-8 after {records} records: {exc.reason}") from None
    except csv.Error as exc:
        raise CsvCheckError(f"{path} is not well-formed CSV after {records} records: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CsvCheckError(f"{path} is not a complete gzip file after {records} records: {exc}") from None
    return max(0, records - 1)


def count_jsonl_records(path: Path, gzipped: bool = False) -> int:
    """Count the lines of a JSON Lines file, each of which must be one JSON object."""
    records = 0
    try:
        with _open_binary(path, gzipped) as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    raise CsvCheckError(f"{path}: line {records + 1} does not end with a line feed")
                if not isinstance(json.loads(line), dict):
                    raise CsvCheckError(f"{path}: line {records + 1} is not a JSON object")
                records += 1
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, CsvCheckError):
            raise
        raise CsvCheckError(f"{path}: line {records + 1} is not valid JSON: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CsvCheckError(f"{path} is not a complete gzip file after {records} records: {exc}") from None
    return records


def _sheet_names(book: zipfile.ZipFile) -> Iterator[str]:
    sheets = [(int(m.group(1)), name) for name in book.namelist() if (m := _SHEET.fullmatch(name))]
    return (name for _, name in sorted(sheets))


def count_xlsx_records(path: Path) -> int:
    """Count the data rows of an XLSX file: every sheet's ``<row>`` elements but its header row,
    after checking every entry's CRC-32."""
    try:
        with zipfile.ZipFile(path) as book:
            broken = book.testzip()
            if broken is not None:
                raise CsvCheckError(f"{path}: the ZIP entry {broken} fails its CRC check")
            records = 0
            for name in _sheet_names(book):
                rows = 0
                with book.open(name) as sheet:
                    for _, element in iterparse(sheet):
                        if element.tag == _ROW_TAG:
                            rows += 1
                            element.clear()  # bounded memory: a sheet holds up to 1,048,576 rows
                records += max(0, rows - 1)
            return records
    except (zipfile.BadZipFile, ParseError, OSError, EOFError, zlib.error) as exc:
        raise CsvCheckError(f"{path} is not a well-formed XLSX file: {exc}") from None


def count_records(path: Path, name: str | None = None) -> int:
    """The data records of a file, read as the format its name (default: ``path``'s) says."""
    fmt, gzipped = file_kind(name or path.name)
    if fmt == "xlsx":
        return count_xlsx_records(path)
    if fmt == "jsonl":
        return count_jsonl_records(path, gzipped)
    return count_csv_records(path, gzipped)


def file_crc32(path: Path) -> str:
    """The CRC-32 of a file's bytes (``zlib.crc32``), as the API writes it: 8 lowercase hex digits."""
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(READ_BLOCK_BYTES):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


CHECKSUMS = {"crc32": file_crc32}  # the checksum algorithms the client can verify, by the API's name


@dataclass
class Verification:
    """What was expected and what the file holds; ``problems`` lists every difference.

    ``checksum_found`` is None when the API gave no checksum, or one of an algorithm this
    client does not know (then it is not compared).
    """

    rows_expected: int | None
    rows_found: int | None
    bytes_expected: int | None
    bytes_found: int
    checksum_expected: dict[str, Any] | None = None
    checksum_found: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check that could be made passed."""
        return not self.problems


def verify_file(
    path: Path,
    rows_expected: int | None,
    bytes_expected: int | None = None,
    checksum: dict[str, Any] | None = None,
    name: str | None = None,
) -> Verification:
    """Compare a file's size, checksum and record count with the API's figures.

    Args:
        checksum: the export's ``checksum`` as the API gives it, e.g.
            ``{"algorithm": "crc32", "value": "1c291ca3"}``.
        name: the file's name as the API gave it, whose extension says its format (default:
            the path's).

    A figure the API did not give (None) is not compared, except the row count: a file whose
    rows cannot be checked is reported as a problem rather than passed silently.
    """
    size = path.stat().st_size
    result = Verification(rows_expected, None, bytes_expected, size, checksum)
    if bytes_expected is not None and size != bytes_expected:
        result.problems.append(f"size mismatch: the file has {size:,} bytes, the export object {bytes_expected:,}")
    compute = CHECKSUMS.get(str((checksum or {}).get("algorithm")))
    if checksum is not None and compute is not None:
        result.checksum_found = compute(path)
        expected = str(checksum.get("value") or "").lower()
        if result.checksum_found != expected:
            result.problems.append(
                f"checksum mismatch: the file's {checksum['algorithm'].upper()} is {result.checksum_found},"
                f" the export's {expected or '(empty)'}"
            )
    try:
        result.rows_found = count_records(path, name)
    except CsvCheckError as exc:
        result.problems.append(str(exc))
        return result
    if rows_expected is None:
        result.problems.append("the API gave no row count to check the file against")
    elif result.rows_found != rows_expected:
        result.problems.append(
            f"row mismatch: the file has {result.rows_found:,} records, the export reported {rows_expected:,}"
        )
    return result
