"""Output formats: what a file is called and typed, and how a chunk's rendered rows become its bytes.

Invariant: a chunk's bytes depend only on the spec, the chunk's rows and its place in the file
(:class:`Position`), never on how the rows arrive (block sizes differ between the inline tier
and the workers; zlib's output does not depend on how its input is split), so a re-run chunk
and the inline tier produce the same bytes as the first attempt.

- ``csv`` and ``jsonl`` without compression: the rows as PostgreSQL's COPY wrote them; part 1
  of a CSV starts with the optional BOM and the header row.
- ``gzip``: each chunk is one gzip member (RFC 1952; header without name or time, so it is
  the same on every run); concatenated members are one gzip file (RFC 1952 §2.2) whose
  content is exactly the uncompressed file.
- ``xlsx``: each sheet is one ZIP entry written by the chunks of that sheet; each chunk's rows
  are one raw deflate segment, ended by a full flush (byte-aligned, independent of the other
  segments), the sheet's last by the final block. The first chunk of a sheet writes its local
  header and the sheet's prolog (header row), the last its epilog. The data descriptors and
  the small entries and central directory are written by the finalizer (:mod:`worker.assembly`).

Compressed outputs have sizes no planner can know in advance, while S3 refuses a non-last
part under 5 MiB: such formats are *staged* — each chunk's bytes are stored as an object of
their own and the finalizer composes the file from them (:mod:`worker.assembly`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from shared import xlsx
from shared.crc import crc32_combine

FORMATS = ("csv", "jsonl", "xlsx")
COMPRESSIONS = ("none", "gzip")
COMPRESSIBLE = ("csv", "jsonl")  # xlsx is a ZIP: compressed by construction
GZIP_LEVEL = 6  # zlib's default: see the README for the measured ratio and cost
DEFLATE_LEVEL = 6  # of the worksheet entries of an XLSX
_EXTENSIONS = {"csv": ".csv", "jsonl": ".jsonl", "xlsx": ".xlsx"}
_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "xlsx": xlsx.CONTENT_TYPE,
}
GZIP_CONTENT_TYPE = "application/gzip"
OPTIONS = {"csv": ("bom", "neutralize_formulas"), "xlsx": ("neutralize_formulas",)}  # a format's options object


@dataclass(frozen=True)
class Output:
    """A file format with its compression."""

    format: str = "csv"
    compression: str = "none"

    @classmethod
    def of_spec(cls, spec: dict[str, Any]) -> Output:
        """The output of a stored spec (one written before formats existed is CSV)."""
        return cls(str(spec.get("format", "csv")), str(spec.get("compression", "none")))

    @property
    def extension(self) -> str:
        """``.csv``, ``.csv.gz``, ``.jsonl``, ``.jsonl.gz`` or ``.xlsx``."""
        return _EXTENSIONS[self.format] + (".gz" if self.compression == "gzip" else "")

    @property
    def content_type(self) -> str:
        """The file's media type (gzip files are ``application/gzip`` whatever they hold)."""
        return GZIP_CONTENT_TYPE if self.compression == "gzip" else _CONTENT_TYPES[self.format]

    @property
    def staged(self) -> bool:
        """Whether chunks store their bytes as objects that the finalizer composes (sizes
        unknown in advance), rather than uploading them as the object's parts directly."""
        return self.compression == "gzip" or self.format == "xlsx"


def formats_json() -> list[dict[str, Any]]:
    """What ``GET /datasets`` tells a client about the formats."""
    return [
        {
            "name": name,
            "extension": _EXTENSIONS[name],
            "content_type": _CONTENT_TYPES[name],
            "compressions": list(COMPRESSIONS) if name in COMPRESSIBLE else ["none"],
            "options": list(OPTIONS.get(name, ())),
        }
        for name in FORMATS
    ]


@dataclass(frozen=True)
class Position:
    """Where a chunk's bytes sit in the file.

    Attributes:
        first: the export's first chunk (a CSV's header row goes there).
        sheet: an XLSX chunk's sheet number (from 1); None for other formats.
        sheet_first: the first chunk of its sheet (writes the local header and the prolog).
        sheet_last: the last chunk of its sheet (writes the epilog and ends the deflate stream).
        zip64: the sheet's entry uses ZIP64 sizes.
    """

    first: bool = True
    sheet: int | None = None
    sheet_first: bool = True
    sheet_last: bool = True
    zip64: bool = False

    def layout(self) -> dict[str, Any] | None:
        """What the planner stores with an XLSX chunk (None for other formats)."""
        if self.sheet is None:
            return None
        return {"sheet": self.sheet, "first": self.sheet_first, "last": self.sheet_last, "zip64": self.zip64}

    @classmethod
    def of(cls, part_number: int, layout: dict[str, Any] | None) -> Position:
        """The position of chunk ``part_number`` from its stored layout."""
        if not layout:
            return cls(first=part_number == 1)
        return cls(
            first=part_number == 1,
            sheet=int(layout["sheet"]),
            sheet_first=bool(layout["first"]),
            sheet_last=bool(layout["last"]),
            zip64=bool(layout["zip64"]),
        )


class Encoder:
    """Turns one chunk's rendered rows (the COPY stream) into the chunk's bytes of the file.

    ``raw_size`` and ``raw_crc32`` describe the bytes before compression (what a gzip member's
    trailer and an XLSX data descriptor hold; a plain encoder, whose bytes are the raw ones,
    leaves ``raw_crc32`` to the caller, which digests what the methods return anyway). A plain
    encoder hands the block back as it is, not copied.
    """

    compresses = False

    def __init__(self, prefix: bytes = b"") -> None:
        self._prefix = prefix
        self.raw_size = 0
        self.raw_crc32 = 0

    def _raw(self, data: bytes | bytearray) -> bytes | bytearray:
        self.raw_size += len(data)
        if self.compresses:
            self.raw_crc32 = zlib.crc32(data, self.raw_crc32)
        return data

    def begin(self) -> bytes | bytearray:
        """The bytes before the first row (header row, gzip header, local header, prolog)."""
        return self._raw(self._prefix)

    def feed(self, block: bytes | bytearray) -> bytes | bytearray:
        """The bytes of a block of rows (possibly empty while a compressor gathers input)."""
        return self._raw(block)

    def end(self) -> bytes:
        """The bytes after the last row (what the compressor still holds, trailers)."""
        return b""


class GzipEncoder(Encoder):
    """One gzip member per chunk."""

    compresses = True

    def __init__(self, prefix: bytes = b"", level: int = GZIP_LEVEL) -> None:
        super().__init__(prefix)
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip wrapper, mtime 0

    def begin(self) -> bytes:
        return self._zip.compress(super().begin())

    def feed(self, block: bytes | bytearray) -> bytes:
        return self._zip.compress(super().feed(block))

    def end(self) -> bytes:
        return self._zip.flush(zlib.Z_FINISH)


class XlsxEncoder(Encoder):
    """One raw deflate segment of a worksheet entry per chunk."""

    compresses = True

    def __init__(self, columns: tuple[str, ...], position: Position, level: int = DEFLATE_LEVEL) -> None:
        super().__init__(xlsx.sheet_prolog(columns) if position.sheet_first else b"")
        self._position = position
        self._zip = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)

    def begin(self) -> bytes:
        header = b""
        if self._position.sheet_first:
            header = xlsx.local_header(xlsx.sheet_entry_name(self._position.sheet or 1), self._position.zip64)
        return header + self._zip.compress(super().begin())

    def feed(self, block: bytes | bytearray) -> bytes:
        return self._zip.compress(super().feed(block))

    def end(self) -> bytes:
        if self._position.sheet_last:
            return self._zip.compress(self._raw(xlsx.SHEET_EPILOG)) + self._zip.flush(zlib.Z_FINISH)
        return self._zip.flush(zlib.Z_FULL_FLUSH)


def encoder(output: Output, columns: tuple[str, ...], position: Position, header: bytes) -> Encoder:
    """The encoder of one chunk.

    Args:
        header: what a text format's first chunk starts with (BOM and header row; empty for
            JSON Lines); written only when ``position.first``.
    """
    if output.format == "xlsx":
        return XlsxEncoder(columns, position)
    prefix = header if position.first else b""
    return GzipEncoder(prefix) if output.compression == "gzip" else Encoder(prefix)


class Workbook:
    """An XLSX file's sheets, followed chunk by chunk in file order: what goes between the
    chunks' bytes (each sheet's data descriptor) and after them (the trailer).

    The finalizer and the inline tier both use it, so both write the same bytes.
    """

    def __init__(self) -> None:
        self.offset = 0  # bytes of the file so far
        self.sheets: list[xlsx.SheetEntry] = []
        self._start = self._compressed = self._raw = self._crc = 0

    def after_chunk(self, position: Position, size: int, raw_size: int, raw_crc32: int) -> bytes:
        """Account for a chunk of ``size`` bytes; return its sheet's data descriptor when it
        ends the sheet (empty otherwise)."""
        sheet = position.sheet or 1
        if position.sheet_first:
            header = len(xlsx.local_header(xlsx.sheet_entry_name(sheet), position.zip64))
            self._start, self._compressed, self._raw, self._crc = self.offset, -header, 0, 0
        self._compressed += size
        self._crc = crc32_combine(self._crc, raw_crc32, raw_size)
        self._raw += raw_size
        self.offset += size
        if not position.sheet_last:
            return b""
        descriptor = xlsx.data_descriptor(self._crc, self._compressed, self._raw, position.zip64)
        self.sheets.append(xlsx.SheetEntry(sheet, self._start, self._crc, self._compressed, self._raw, position.zip64))
        self.offset += len(descriptor)
        return descriptor

    def trailer(self) -> bytes:
        """The small entries and the central directory: the file's last bytes."""
        return xlsx.trailer(self.sheets, self.offset)
