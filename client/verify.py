"""Checking a downloaded CSV file against what the API said it holds.

Invariant: records are counted the way a CSV reader sees them (RFC 4180 quoting, so a CR
or LF inside a quoted field does not start a record; a UTF-8 BOM is not data; the header
row is not a record), never by counting lines, and a file that is not well-formed CSV
fails the check instead of producing a count. The checksum is computed over the file's
bytes as read back from disk, every byte, BOM and header included, exactly as stored.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIELD_SIZE_LIMIT = 1 << 30  # the csv module's default (128 KiB) is below some legitimate cells
READ_BLOCK_BYTES = 1024 * 1024  # the checksum reads the file in blocks of this size: bounded memory


class CsvCheckError(ValueError):
    """The file is not UTF-8 CSV as Spillway writes it; the message says where."""


def count_csv_records(path: Path) -> int:
    """Count the data records of a CSV file with a header row.

    Args:
        path: a UTF-8 CSV file, optionally starting with a BOM.

    Returns:
        The number of records after the header (0 for an empty file or a header alone).

    Raises:
        CsvCheckError: the file is not valid UTF-8 or not well-formed CSV.
    """
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    records = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for _ in csv.reader(handle, strict=True):
                records += 1
    except UnicodeDecodeError as exc:
        raise CsvCheckError(f"{path} is not valid UTF-8 after {records} records: {exc.reason}") from None
    except csv.Error as exc:
        raise CsvCheckError(f"{path} is not well-formed CSV after {records} records: {exc}") from None
    return max(0, records - 1)


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
    path: Path, rows_expected: int | None, bytes_expected: int | None = None, checksum: dict[str, Any] | None = None
) -> Verification:
    """Compare a file's size, checksum and CSV record count with the API's figures.

    Args:
        checksum: the export's ``checksum`` as the API gives it, e.g.
            ``{"algorithm": "crc32", "value": "1c291ca3"}``.

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
        result.rows_found = count_csv_records(path)
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
