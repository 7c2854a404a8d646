"""Checking a downloaded CSV file against what the API said it holds.

Invariant: records are counted the way a CSV reader sees them (RFC 4180 quoting, so a CR
or LF inside a quoted field does not start a record; a UTF-8 BOM is not data; the header
row is not a record), never by counting lines, and a file that is not well-formed CSV
fails the check instead of producing a count.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

FIELD_SIZE_LIMIT = 1 << 30  # the csv module's default (128 KiB) is below some legitimate cells


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


@dataclass
class Verification:
    """What was expected and what the file holds; ``problems`` lists every difference."""

    rows_expected: int | None
    rows_found: int | None
    bytes_expected: int | None
    bytes_found: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check that could be made passed."""
        return not self.problems


def verify_file(path: Path, rows_expected: int | None, bytes_expected: int | None = None) -> Verification:
    """Compare a file's size and CSV record count with the API's figures.

    A figure the API did not give (None) is not compared, except the row count: a file whose
    rows cannot be checked is reported as a problem rather than passed silently.
    """
    size = path.stat().st_size
    result = Verification(rows_expected, None, bytes_expected, size)
    if bytes_expected is not None and size != bytes_expected:
        result.problems.append(f"size mismatch: the file has {size:,} bytes, the export object {bytes_expected:,}")
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
