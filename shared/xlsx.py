"""The byte structures of an XLSX written as one ZIP stream: sheets first, then a trailer.

Invariant: a workbook is ``local_header + deflate data + data_descriptor`` for sheet 1, 2, …,
back to back from byte 0, then :func:`trailer` — so the output is a function of its inputs
only (fixed DOS time 1980-01-01 00:00:00, no clock, no randomness). A sheet's local header
carries flag bit 3, so its CRC-32 and sizes need not be known when its first byte is written;
they go in its data descriptor and the central directory. A sheet written with ``zip64`` has
an 8-byte-size descriptor and version 45 in both of its headers; the trailer's own entries are
stored whole (no descriptor). ZIP64 records appear only where a value does not fit.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

SHEET_MAX_ROWS = 1_048_575  # data rows per sheet: Excel's 1,048,576 rows minus the header row
MAX_SHEET_COLUMNS = 16_384  # Excel's column limit (XFD)
# cellXfs indices in styles.xml that the row renderer uses (s="N" on <c>):
STYLE_DEFAULT = 0
STYLE_DATE = 1  # number format yyyy-mm-dd
STYLE_DATETIME = 2  # number format yyyy-mm-dd hh:mm:ss
STYLE_TIME = 3  # number format hh:mm:ss
STYLE_QUOTED = 4  # quotePrefix="1" (text that looks like a formula stays text when edited)
STYLE_HEADER = 5  # bold font, for the header row
CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SHEET_EPILOG = b"</sheetData></worksheet>"

_LIMIT32 = 0xFFFFFFFF  # also the "see the ZIP64 extra" sentinel, so a value must stay below it
_LIMIT16 = 0xFFFF
_DOS_TIME, _DOS_DATE = 0, (1 << 5) | 1  # 1980-01-01 00:00:00
_FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x0008, 0x0800
_STORED, _DEFLATED = 0, 8
_VERSION, _VERSION_ZIP64 = 20, 45  # host byte 0 (MS-DOS) in "version made by"
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_LOCAL_SIG, _DESCRIPTOR_SIG, _CENTRAL_SIG = 0x04034B50, 0x08074B50, 0x02014B50
_END_SIG, _END64_SIG, _LOCATOR64_SIG = 0x06054B50, 0x06064B50, 0x07064B50

_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_ESCAPED = re.compile("_(?=x[0-9A-Fa-f]{4}_)|[&<>\r\n\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;", "\n": "&#10;", "_": "_x005F_"}
# What the SQL renderer (shared/query.py) escapes as _xHHHH_, and the PostgreSQL regular
# expression of a text that needs any of it (PostgreSQL text holds no NUL).
FORBIDDEN_CODES = (*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF)
NEEDS_OOXML_ESCAPE = "[" + "".join(chr(c) for c in FORBIDDEN_CODES) + "]|_x[0-9A-Fa-f]{4}_"


def sheet_entry_name(n: int) -> str:
    """The ZIP entry name of sheet ``n`` (from 1): ``xl/worksheets/sheet{n}.xml``."""
    return f"xl/worksheets/sheet{n}.xml"


def sheet_title(n: int) -> str:
    """The tab name of sheet ``n`` (from 1): ``Sheet{n}``."""
    return f"Sheet{n}"


def local_header(name: str, zip64: bool) -> bytes:
    """The local file header of a deflated sheet entry whose CRC and sizes follow in a data descriptor.

    Args:
        name: the entry name (UTF-8, flag bit 11).
        zip64: whether the entry may reach 4 GiB: version 45, sizes 0xFFFFFFFF and a ZIP64 extra
            field of two 8-byte zeros; its descriptor must then be written with ``zip64=True``.

    Returns:
        The header bytes, to be followed by the raw deflate data.
    """
    encoded = name.encode()
    extra = struct.pack("<HHQQ", 0x0001, 16, 0, 0) if zip64 else b""
    size = _LIMIT32 if zip64 else 0
    version = _VERSION_ZIP64 if zip64 else _VERSION
    return _local(encoded, extra, version, _FLAG_DESCRIPTOR | _FLAG_UTF8, _DEFLATED, 0, size, size)


def _local(encoded: bytes, extra: bytes, version: int, flags: int, method: int, crc: int, size: int, raw: int) -> bytes:
    """A local file header (``size`` compressed, ``raw`` uncompressed), its name and extra field."""
    fields = (_LOCAL_SIG, version, flags, method, _DOS_TIME, _DOS_DATE, crc, size, raw, len(encoded), len(extra))
    return _LOCAL.pack(*fields) + encoded + extra


def data_descriptor(crc32: int, compressed: int, uncompressed: int, zip64: bool) -> bytes:
    """The data descriptor that ends a sheet entry (signature, CRC-32, compressed and uncompressed sizes).

    Args:
        crc32: the CRC-32 of the uncompressed sheet XML.
        compressed: the bytes of deflate data between the local header and this descriptor.
        uncompressed: the bytes of sheet XML.
        zip64: as given to :func:`local_header` (8-byte sizes when true, else 4-byte).

    Raises:
        ValueError: not ``zip64`` and a size reaches 0xFFFFFFFF (that value is the ZIP64 sentinel,
            so the central directory could not hold it without a ZIP64 extra the local header lacks).
    """
    if zip64:
        return struct.pack("<IIQQ", _DESCRIPTOR_SIG, crc32, compressed, uncompressed)
    if max(compressed, uncompressed) >= _LIMIT32:
        raise ValueError(f"sizes {compressed}/{uncompressed} need a zip64 entry")
    return struct.pack("<IIII", _DESCRIPTOR_SIG, crc32, compressed, uncompressed)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return _ENTITIES.get(char) or f"_x{ord(char):04X}_"


def escape_text(value: str) -> str:
    """XML text for an inline string ``<t>`` that reads back as ``value`` in Excel.

    ``& < >`` become entities; CR and LF become ``&#13;`` ``&#10;`` (no raw line break in a row,
    and no parser normalises them away); characters XML 1.0 forbids become ``_xHHHH_`` (uppercase
    hex); the underscore of a literal ``_xHHHH_`` becomes ``_x005F_`` so it is not decoded. One
    left-to-right pass, so no escape is escaped again. This is the reference for the SQL renderer.
    """
    return _ESCAPED.sub(_escape_one, value)


def sheet_prolog(columns: Sequence[str]) -> bytes:
    """The start of a sheet's XML: frozen header pane, ``<sheetData>`` and the bold header row.

    Raises:
        ValueError: more than :data:`MAX_SHEET_COLUMNS` columns.
    """
    if len(columns) > MAX_SHEET_COLUMNS:
        raise ValueError(f"{len(columns)} columns; a sheet holds at most {MAX_SHEET_COLUMNS}")
    pane = '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    cell = f'<c t="inlineStr" s="{STYLE_HEADER}"><is><t xml:space="preserve">{{}}</t></is></c>'
    header = "".join(cell.format(escape_text(name)) for name in columns)
    return (
        f'{_XML}<worksheet xmlns="{_MAIN_NS}">'
        f'<sheetViews><sheetView workbookViewId="0">{pane}</sheetView></sheetViews>'
        f"<sheetData><row>{header}</row>\n"
    ).encode()


@dataclass(frozen=True)
class SheetEntry:
    """A written sheet entry, as the central directory needs it."""

    number: int  # 1-based sheet number
    offset: int  # byte offset of its local header in the file
    crc32: int  # CRC-32 of the uncompressed sheet XML
    compressed: int  # bytes of deflate data (between the local header and the descriptor)
    uncompressed: int  # bytes of sheet XML
    zip64: bool  # whether its local header carried the zip64 extra (then its descriptor has 8-byte sizes)

    def end(self) -> int:
        """The offset just past its data descriptor."""
        header = len(local_header(sheet_entry_name(self.number), self.zip64))
        return self.offset + header + self.compressed + (24 if self.zip64 else 16)


def _package_parts(count: int) -> list[tuple[str, bytes]]:
    """The small parts of a workbook of ``count`` sheets, as (entry name, content)."""
    numbers = range(1, count + 1)
    sheet_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
    overrides = "".join(f'<Override PartName="/{sheet_entry_name(n)}" ContentType="{sheet_type}"/>' for n in numbers)
    content_types = (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{CONTENT_TYPE}.main+xml"/>'
        '<Override PartName="/xl/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        f"{overrides}</Types>"
    )
    root_rels = (
        f'<Relationships xmlns="{_PKG_REL_NS}"><Relationship Id="rId1" '
        f'Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    )
    sheets = "".join(f'<sheet name="{sheet_title(n)}" sheetId="{n}" r:id="rId{n}"/>' for n in numbers)
    workbook = (
        f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        f"<bookViews><workbookView/></bookViews><sheets>{sheets}</sheets></workbook>"
    )
    rels = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL_NS}/worksheet" Target="worksheets/sheet{n}.xml"/>' for n in numbers
    )
    workbook_rels = (
        f'<Relationships xmlns="{_PKG_REL_NS}">{rels}'
        f'<Relationship Id="rId{count + 1}" Type="{_REL_NS}/styles" Target="styles.xml"/></Relationships>'
    )
    xf = '<xf numFmtId="{}" fontId="{}" fillId="0" borderId="0" xfId="0"{}/>'
    cell_xfs = (  # in STYLE_* order
        xf.format(0, 0, ""),
        xf.format(164, 0, ' applyNumberFormat="1"'),
        xf.format(165, 0, ' applyNumberFormat="1"'),
        xf.format(166, 0, ' applyNumberFormat="1"'),
        xf.format(0, 0, ' quotePrefix="1"'),
        xf.format(0, 1, ' applyFont="1"'),
    )
    font = '<font>{}<sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    styles = (
        f'<styleSheet xmlns="{_MAIN_NS}">'
        '<numFmts count="3"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
        '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/><numFmt numFmtId="166" formatCode="hh:mm:ss"/>'
        f'</numFmts><fonts count="2">{font.format("")}{font.format("<b/>")}</fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        f'<cellXfs count="{len(cell_xfs)}">{"".join(cell_xfs)}</cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
    )
    parts = [
        ("[Content_Types].xml", content_types),
        ("_rels/.rels", root_rels),
        ("xl/workbook.xml", workbook),
        ("xl/_rels/workbook.xml.rels", workbook_rels),
        ("xl/styles.xml", styles),
    ]
    return [(name, (_XML + xml).encode()) for name, xml in parts]


def _central_record(
    name: str, flags: int, method: int, crc32: int, compressed: int, uncompressed: int, offset: int, zip64: bool
) -> bytes:
    """A central directory record; a ZIP64 extra when a size or the offset does not fit in 4 bytes.

    The extra then holds all three values (uncompressed, compressed, offset) and all three 4-byte
    fields are 0xFFFFFFFF: valid per APPNOTE 4.5.3, and LibreOffice reads the extra positionally
    (size first), whatever the sentinels say, so an extra with only some of them misleads it.
    """
    encoded = name.encode()
    if max(compressed, uncompressed, offset) >= _LIMIT32:
        extra = struct.pack("<HHQQQ", 0x0001, 24, uncompressed, compressed, offset)
        compressed = uncompressed = offset = _LIMIT32
        zip64 = True
    else:
        extra = b""
    version = _VERSION_ZIP64 if zip64 else _VERSION
    record = _CENTRAL.pack(
        _CENTRAL_SIG, version, version, flags, method, _DOS_TIME, _DOS_DATE, crc32, compressed, uncompressed,
        len(encoded), len(extra), 0, 0, 0, 0, offset,
    )  # fmt: skip
    return record + encoded + extra


def trailer(sheets: Sequence[SheetEntry], offset: int) -> bytes:
    """Everything after the last sheet's data descriptor: small parts, central directory, end records.

    Args:
        sheets: every sheet of the workbook, numbered 1..N, in any order.
        offset: the byte offset where the trailer starts (just past the last descriptor).

    Returns:
        The stored entries for content types, rels, workbook and styles; the central directory
        (sheets first, by number); the ZIP64 end record and locator if a count, size or offset
        does not fit; the end of central directory record.

    Raises:
        ValueError: no sheets, numbers not 1..N, sheets that do not lie back to back from byte 0
            up to ``offset``, or a sheet without ``zip64`` whose sizes need it.
    """
    ordered = sorted(sheets, key=lambda sheet: sheet.number)
    if not ordered or [sheet.number for sheet in ordered] != list(range(1, len(ordered) + 1)):
        raise ValueError(f"sheets must be numbered 1..N, got {[sheet.number for sheet in sheets]}")
    starts = [0] + [sheet.end() for sheet in ordered]
    if [sheet.offset for sheet in ordered] != starts[:-1] or starts[-1] != offset:
        raise ValueError(f"sheets do not lie back to back from 0 to {offset}")
    records = []
    for sheet in ordered:
        if not sheet.zip64 and max(sheet.compressed, sheet.uncompressed) >= _LIMIT32:
            raise ValueError(f"sheet {sheet.number} needs a zip64 entry")
        flags = _FLAG_DESCRIPTOR | _FLAG_UTF8
        name = sheet_entry_name(sheet.number)
        args = (sheet.crc32, sheet.compressed, sheet.uncompressed, sheet.offset, sheet.zip64)
        records.append(_central_record(name, flags, _DEFLATED, *args))
    out = bytearray()
    for name, data in _package_parts(len(ordered)):
        encoded, crc, size = name.encode(), zlib.crc32(data), len(data)
        records.append(_central_record(name, _FLAG_UTF8, _STORED, crc, size, size, offset + len(out), False))
        out += _local(encoded, b"", _VERSION, _FLAG_UTF8, _STORED, crc, size, size) + data
    directory = b"".join(records)
    directory_offset = offset + len(out)
    out += directory
    count, size = len(records), len(directory)
    if count >= _LIMIT16 or size >= _LIMIT32 or directory_offset >= _LIMIT32:
        end64_offset = offset + len(out)
        out += _END64.pack(
            _END64_SIG, _END64.size - 12, _VERSION_ZIP64, _VERSION_ZIP64, 0, 0, count, count, size, directory_offset
        )
        out += _LOCATOR64.pack(_LOCATOR64_SIG, 0, end64_offset, 1)
    short_count = min(count, _LIMIT16)
    out += _END.pack(_END_SIG, 0, 0, short_count, short_count, min(size, _LIMIT32), min(directory_offset, _LIMIT32), 0)
    return bytes(out)
