"""shared.xlsx: a workbook built the way the pipeline builds it reads back in zipfile, unzip and openpyxl."""

from __future__ import annotations

import datetime
import io
import random
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from xml.etree import ElementTree

import pytest

from shared.crc import crc32_of_parts
from shared.xlsx import (
    MAX_SHEET_COLUMNS,
    SHEET_EPILOG,
    SHEET_MAX_ROWS,
    STYLE_DATE,
    STYLE_DATETIME,
    STYLE_HEADER,
    STYLE_QUOTED,
    STYLE_TIME,
    SheetEntry,
    data_descriptor,
    escape_text,
    local_header,
    sheet_entry_name,
    sheet_prolog,
    trailer,
)

COLUMNS = ["id", "name & co", "ok", "day", "gap", "at", "clock", "formula"]
ROW = (
    b'<row><c><v>1</v></c><c t="inlineStr"><is><t xml:space="preserve">a &amp; b</t></is></c>'
    b'<c t="b"><v>1</v></c><c s="1"><v>45322</v></c><c/><c s="2"><v>45322.5</v></c><c s="3"><v>0.75</v></c>'
    b'<c t="inlineStr" s="4"><is><t xml:space="preserve">=1+1</t></is></c></row>\n'
)
ROW_VALUES = (
    1,
    "a & b",
    True,
    datetime.datetime(2024, 1, 31),
    None,
    datetime.datetime(2024, 1, 31, 12),
    datetime.time(18),
    "=1+1",
)
HOSTILE = [
    "\x01ctl\x08\x0b\x0c\x0e\x1f",
    "_x0041_",
    "_x005F_x0041_",
    "_X0041_ _x004_ _xZZZZ_",
    "a\r\nb\rc\nd",
    "<&>\"'",
    "  leading and trailing  ",
    "emoji \U0001f600 and \u00e9",
    "tab\there",
    "\ufffe\uffff",
    "]]> &amp;",
]
ZIP_NAMES = [
    "[Content_Types].xml",
    "_rels/.rels",
    "xl/workbook.xml",
    "xl/_rels/workbook.xml.rels",
    "xl/styles.xml",
]


def excel_unescape(text: str) -> str:
    """Excel's reading of ``_xHHHH_`` (openpyxl.utils.escape.unescape): one left-to-right pass."""
    return re.sub("_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def deflate_segment(data: bytes, last: bool) -> bytes:
    """One worker's raw-deflate segment: its own compressor, ended by a full flush (the last by finish)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)


def sheet_segments(rows: int, segments: int, extra_row: bytes = b"") -> list[bytes]:
    """A sheet's XML cut into ``segments`` pieces: the prolog opens the first, the epilog ends the last."""
    pieces = [ROW * (rows // segments + (i < rows % segments)) for i in range(segments)]
    pieces[0] = sheet_prolog(COLUMNS) + pieces[0]
    pieces[-1] = pieces[-1] + extra_row + SHEET_EPILOG
    return pieces


def build_workbook(sheets: list[list[bytes]], zip64: frozenset[int] = frozenset()) -> bytes:
    """The whole file: each sheet as local header + independently compressed segments + descriptor, then trailer."""
    out = bytearray()
    entries = []
    for number, pieces in enumerate(sheets, start=1):
        compressed = b"".join(deflate_segment(p, i == len(pieces) - 1) for i, p in enumerate(pieces))
        crc = crc32_of_parts((zlib.crc32(p), len(p)) for p in pieces)
        assert crc == zlib.crc32(b"".join(pieces))
        size, wide = sum(len(p) for p in pieces), number in zip64
        entry = SheetEntry(number, len(out), crc, len(compressed), size, wide)
        out += local_header(sheet_entry_name(number), wide) + compressed
        out += data_descriptor(crc, len(compressed), size, wide)
        entries.append(entry)
    return bytes(out + trailer(entries, len(out)))


def workbook_of(count: int, zip64: frozenset[int] = frozenset()) -> tuple[bytes, list[bytes]]:
    sheets = [sheet_segments(rows=12 * n, segments=3 + n) for n in range(1, count + 1)]
    return build_workbook(sheets, zip64), [b"".join(pieces) for pieces in sheets]


@pytest.fixture
def openpyxl():
    """openpyxl, a test-only dependency (``.venv/bin/pip install openpyxl``)."""
    return pytest.importorskip("openpyxl")


LAYOUTS = [(1, frozenset()), (2, frozenset({2})), (3, frozenset()), (3, frozenset({1, 2, 3}))]


@pytest.mark.parametrize(("count", "zip64"), LAYOUTS)
def test_workbook_reads_back_with_zipfile(count, zip64):
    data, sheets = workbook_of(count, zip64)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [sheet_entry_name(n) for n in range(1, count + 1)] + ZIP_NAMES
        for n, xml in enumerate(sheets, start=1):
            assert archive.read(sheet_entry_name(n)) == xml
        for name in ZIP_NAMES:
            ElementTree.fromstring(archive.read(name))  # every part is well-formed XML
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.flag_bits & 0x0800
            assert bool(info.flag_bits & 0x0008) == info.filename.startswith("xl/worksheets/")


@pytest.mark.parametrize(("count", "zip64"), LAYOUTS)
def test_workbook_opens_in_openpyxl(openpyxl, count, zip64):
    data, _ = workbook_of(count, zip64)
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    assert workbook.sheetnames == [f"Sheet{n}" for n in range(1, count + 1)]
    for n, sheet in enumerate(workbook.worksheets, start=1):
        rows = list(sheet.iter_rows())
        assert len(rows) == 1 + 12 * n
        assert [cell.value for cell in rows[0]] == COLUMNS
        assert all(cell.font.b for cell in rows[0])
        assert sheet.freeze_panes == "A2"
        for row in rows[1:]:
            values = tuple(cell.value for cell in row)
            assert values == ROW_VALUES
            assert [type(v) for v in values] == [type(v) for v in ROW_VALUES]  # True is a bool, not 1
            assert [cell.quotePrefix for cell in row] == [False] * 7 + [True]
            formats = [cell.number_format for cell in row[3:7]]
            assert formats == ["yyyy-mm-dd", "General", "yyyy-mm-dd hh:mm:ss", "hh:mm:ss"]


@pytest.mark.skipif(shutil.which("unzip") is None, reason="unzip is not installed")
@pytest.mark.parametrize(("count", "zip64"), LAYOUTS)
def test_unzip_finds_no_errors(tmp_path, count, zip64):
    path = tmp_path / "book.xlsx"
    path.write_bytes(workbook_of(count, zip64)[0])
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors detected" in result.stdout


def test_same_inputs_give_the_same_bytes():
    assert workbook_of(3, frozenset({2}))[0] == workbook_of(3, frozenset({2}))[0]
    sheets = [SheetEntry(1, 0, 7, 10, 20, False)]
    sheets.append(SheetEntry(2, sheets[0].end(), 8, 30, 40, True))
    assert trailer(sheets, sheets[1].end()) == trailer(sheets[::-1], sheets[1].end())


def test_styles_hold_the_cell_formats_in_style_order():
    data, _ = workbook_of(1)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        styles = ElementTree.fromstring(archive.read("xl/styles.xml"))
        workbook = archive.read("xl/workbook.xml").decode()
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    formats = {f.get("numFmtId"): f.get("formatCode") for f in styles.iterfind("m:numFmts/m:numFmt", ns)}
    xfs = styles.findall("m:cellXfs/m:xf", ns)
    fonts = styles.findall("m:fonts/m:font", ns)
    assert len(xfs) == 6 and len(styles.findall("m:fills/m:fill", ns)) == 2
    assert formats[xfs[STYLE_DATE].get("numFmtId")] == "yyyy-mm-dd"
    assert formats[xfs[STYLE_DATETIME].get("numFmtId")] == "yyyy-mm-dd hh:mm:ss"
    assert formats[xfs[STYLE_TIME].get("numFmtId")] == "hh:mm:ss"
    assert xfs[STYLE_QUOTED].get("quotePrefix") == "1"
    assert fonts[int(xfs[STYLE_HEADER].get("fontId"))].find("m:b", ns) is not None
    assert "<bookViews><workbookView/></bookViews>" in workbook


@pytest.mark.parametrize(
    ("text", "xml"),
    [
        ("plain", "plain"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("line\r\nbreak\n", "line&#13;&#10;break&#10;"),
        ("\x01\x08\x0b\x0c\x0e\x1f", "_x0001__x0008__x000B__x000C__x000E__x001F_"),
        ("tab\tstays", "tab\tstays"),
        ("\ufffe\uffff\ufffd", "_xFFFE__xFFFF_\ufffd"),
        ("_x0041_", "_x005F_x0041_"),
        ("_xbeef_", "_x005F_xbeef_"),
        ("_x005F_", "_x005F_x005F_"),
        ("_X0041_ _x041_ _x00411_ x0041_", "_X0041_ _x041_ _x00411_ x0041_"),
        ("\x1f_x0041_", "_x001F__x005F_x0041_"),
        ("  spaced  ", "  spaced  "),
        ("\"quotes'", "\"quotes'"),
    ],
)
def test_escape_text(text, xml):
    assert escape_text(text) == xml


def test_escaped_text_parses_and_decodes_to_itself():
    rng = random.Random(11)
    alphabet = ["_", "x", "0", "4", "1", "F", "_x", "_x0041_", "\x01", "\x1f", "\r", "\n", "&", "<", ">", " ", "\ufffe"]
    samples = HOSTILE + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(2000)]
    for text in samples:
        element = ElementTree.fromstring(f'<t xml:space="preserve">{escape_text(text)}</t>')
        assert excel_unescape(element.text or "") == text, text


def test_hostile_strings_read_back_in_openpyxl(openpyxl):
    cells = "".join(f'<c t="inlineStr"><is><t xml:space="preserve">{escape_text(s)}</t></is></c>' for s in HOSTILE)
    sheet = [sheet_prolog(HOSTILE) + f"<row>{cells}</row>\n".encode() + SHEET_EPILOG]
    workbook = openpyxl.load_workbook(io.BytesIO(build_workbook([sheet])))
    header, row = ([cell.value for cell in r] for r in workbook.active.iter_rows())
    assert header == row
    for text, value in zip(HOSTILE, row, strict=True):
        # openpyxl 3.1 keeps _xHHHH_ as written (Excel decodes it), so it gives the text itself only
        # where escape_text wrote none; otherwise the text is what Excel's decoding makes of it.
        assert excel_unescape(value) == text
        if not re.search("_x[0-9A-Fa-f]{4}_", escape_text(text)):
            assert value == text


def test_sheet_prolog():
    assert sheet_prolog(["a<b", " c "]) == (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
        b'state="frozen"/></sheetView></sheetViews><sheetData><row>'
        b'<c t="inlineStr" s="5"><is><t xml:space="preserve">a&lt;b</t></is></c>'
        b'<c t="inlineStr" s="5"><is><t xml:space="preserve"> c </t></is></c></row>\n'
    )
    assert sheet_prolog(["x"] * MAX_SHEET_COLUMNS).count(b"<c ") == MAX_SHEET_COLUMNS
    with pytest.raises(ValueError):
        sheet_prolog(["x"] * (MAX_SHEET_COLUMNS + 1))
    assert SHEET_MAX_ROWS + 1 == 2**20 and MAX_SHEET_COLUMNS == 2**14


def test_local_header_and_descriptor_layout():
    name = sheet_entry_name(3)
    plain = local_header(name, zip64=False)
    fields = struct.unpack_from("<IHHHHHIIIHH", plain)
    assert fields == (0x04034B50, 20, 0x0808, 8, 0, 0x0021, 0, 0, 0, len(name), 0)
    assert plain[30:] == name.encode()
    wide = local_header(name, zip64=True)
    fields = struct.unpack_from("<IHHHHHIIIHH", wide)
    assert fields == (0x04034B50, 45, 0x0808, 8, 0, 0x0021, 0, 0xFFFFFFFF, 0xFFFFFFFF, len(name), 20)
    assert wide[30 + len(name) :] == struct.pack("<HHQQ", 1, 16, 0, 0)
    assert data_descriptor(5, 6, 7, zip64=False) == struct.pack("<IIII", 0x08074B50, 5, 6, 7)
    assert data_descriptor(5, 6, 2**33, zip64=True) == struct.pack("<IIQQ", 0x08074B50, 5, 6, 2**33)
    data_descriptor(1, 0xFFFFFFFE, 0xFFFFFFFE, zip64=False)
    with pytest.raises(ValueError):
        data_descriptor(1, 10, 0xFFFFFFFF, zip64=False)


class SparseFile(io.RawIOBase):
    """A read-only file of ``size`` bytes, zeros except for ``pieces`` (offset → bytes): a 14 GiB zip for free."""

    def __init__(self, pieces: dict[int, bytes], size: int) -> None:
        self.pieces, self.size, self.position = pieces, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.size - self.position))
        chunk = bytearray(n)
        for start, data in self.pieces.items():
            lo, hi = max(start, self.position), min(start + len(data), self.position + n)
            if lo < hi:
                chunk[lo - self.position : hi - self.position] = data[lo - start : hi - start]
        buffer[:n] = chunk
        self.position += n
        return n


def central_records(directory: bytes) -> list[dict]:
    records, at = [], 0
    while at < len(directory):
        f = struct.unpack_from("<IHHHHHHIIIHHHHHII", directory, at)
        assert f[0] == 0x02014B50
        name_len, extra_len = f[10], f[11]
        name = directory[at + 46 : at + 46 + name_len].decode()
        extra = directory[at + 46 + name_len : at + 46 + name_len + extra_len]
        keys = ("version", "needed", "flags", "method", "crc", "compressed", "uncompressed", "offset")
        values = (f[1], f[2], f[3], f[4], f[7], f[8], f[9], f[16])
        records.append({"name": name, "extra": extra, **dict(zip(keys, values, strict=True))})
        at += 46 + name_len + extra_len + f[12]
    return records


def test_trailer_past_4_gib_has_zip64_records():
    gib = 2**30
    first = SheetEntry(1, 0, 0x11111111, 5 * gib, 40 * gib, zip64=True)  # sizes overflow
    second = SheetEntry(2, first.end(), 0x22222222, 1000, 9000, zip64=False)  # offset overflows
    third = SheetEntry(3, second.end(), 0x33333333, 3 * gib, 5 * gib, zip64=True)  # offset and uncompressed
    start = third.end()
    tail = trailer([first, second, third], start)

    end = struct.unpack_from("<IHHHHIIH", tail, len(tail) - 22)
    assert end[:5] == (0x06054B50, 0, 0, 8, 8) and end[6:] == (0xFFFFFFFF, 0)
    locator = struct.unpack_from("<IIQI", tail, len(tail) - 42)
    assert locator[0] == 0x07064B50 and locator[3] == 1
    end64 = struct.unpack_from("<IQHHIIQQQQ", tail, locator[2] - start)
    assert end64[:8] == (0x06064B50, 44, 45, 45, 0, 0, 8, 8)
    size, directory_offset = end64[8], end64[9]
    assert end[5] == size and directory_offset + size == locator[2] and locator[2] - start + 56 == len(tail) - 42
    records = central_records(tail[directory_offset - start : directory_offset - start + size])
    assert [r["name"] for r in records] == [sheet_entry_name(n) for n in (1, 2, 3)] + ZIP_NAMES

    for record, sheet in zip(records, (first, second, third), strict=False):
        assert (record["crc"], record["flags"], record["method"], record["needed"]) == (sheet.crc32, 0x0808, 8, 45)
        assert (record["compressed"], record["uncompressed"], record["offset"]) == (0xFFFFFFFF,) * 3
        assert record["extra"] == struct.pack("<HHQQQ", 1, 24, sheet.uncompressed, sheet.compressed, sheet.offset)
    for record in records[3:]:  # stored parts past 4 GiB: the offset overflows, so all three go in the extra
        assert (record["flags"], record["method"], record["offset"]) == (0x0800, 0, 0xFFFFFFFF)
        _, length, uncompressed, compressed, offset = struct.unpack("<HHQQQ", record["extra"])
        assert length == 24 and uncompressed == compressed < 10_000 and start <= offset < directory_offset

    # zipfile reads the same records, and the trailer's own entries, from a sparse 14 GiB file.
    pieces = {s.offset: local_header(sheet_entry_name(s.number), s.zip64) for s in (first, second, third)}
    with zipfile.ZipFile(SparseFile({**pieces, start: tail}, start + len(tail))) as archive:
        infos = archive.infolist()
        sizes = [(i.header_offset, i.compress_size, i.file_size, i.CRC) for i in infos[:3]]
        assert sizes == [(s.offset, s.compressed, s.uncompressed, s.crc32) for s in (first, second, third)]
        assert all(info.header_offset > 0xFFFFFFFF for info in infos[1:])
        assert b'<sheet name="Sheet3" sheetId="3" r:id="rId3"/>' in archive.read("xl/workbook.xml")
        assert b'Id="rId4"' in archive.read("xl/_rels/workbook.xml.rels")


def test_small_trailer_has_no_zip64_records():
    data, _ = workbook_of(2)
    assert struct.pack("<I", 0x06064B50) not in data and struct.pack("<I", 0x07064B50) not in data
    assert b"\x01\x00\x10\x00" not in data[:200]  # no zip64 extra in the first local header


def test_entry_count_past_0xffff_uses_zip64_end_records():
    empty = deflate_segment(b"", last=True)
    out, entries = bytearray(), []
    for number in range(1, 65_531):  # 65,530 sheets + 5 parts = 65,535 entries, the 16-bit sentinel
        entries.append(SheetEntry(number, len(out), 0, len(empty), 0, zip64=False))
        out += local_header(sheet_entry_name(number), zip64=False) + empty + data_descriptor(0, len(empty), 0, False)
    data = bytes(out + trailer(entries, len(out)))
    assert struct.unpack_from("<HH", data, len(data) - 22 + 8) == (0xFFFF, 0xFFFF)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len(archive.infolist()) == 65_535
        assert archive.read(sheet_entry_name(65_530)) == b""
        assert b'<sheet name="Sheet65530"' in archive.read("xl/workbook.xml")


def test_trailer_rejects_what_it_cannot_describe():
    one = SheetEntry(1, 0, 0, 10, 10, zip64=False)
    two = SheetEntry(2, one.end(), 0, 10, 10, zip64=False)
    with pytest.raises(ValueError, match="numbered"):
        trailer([], 0)
    with pytest.raises(ValueError, match="numbered"):
        trailer([two], two.end())
    with pytest.raises(ValueError, match="back to back"):
        trailer([one, two], two.end() + 1)  # a hole before the trailer
    with pytest.raises(ValueError, match="back to back"):
        trailer([one, SheetEntry(2, one.end() + 4, 0, 10, 10, zip64=False)], two.end() + 4)
    big = SheetEntry(1, 0, 0, 10, 2**32, zip64=False)
    with pytest.raises(ValueError, match="zip64"):
        trailer([big], big.end())
