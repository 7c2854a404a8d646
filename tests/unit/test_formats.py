"""The chunk encoders (no database): a chunk's bytes do not depend on how its rows arrive,
gzip members concatenate to the whole file, XLSX segments make one deflate stream per sheet."""

from __future__ import annotations

import gzip
import io
import random
import zipfile

import openpyxl

from shared.formats import Encoder, GzipEncoder, Output, Position, Workbook, XlsxEncoder, encoder

ROWS = b"".join(f"{n},name {n % 97},{n * 1.5}\n".encode() for n in range(20_000))


def encode(enc: Encoder, data: bytes, splits: list[int]) -> bytes:
    out = [enc.begin()]
    start = 0
    for end in [*splits, len(data)]:
        out.append(enc.feed(data[start:end]))
        start = end
    out.append(enc.end())
    return b"".join(out)


def test_a_chunk_s_bytes_do_not_depend_on_its_blocks():
    rng = random.Random(7)
    whole = encode(GzipEncoder(b"h\n"), ROWS, [])
    for _ in range(5):
        splits = sorted(rng.sample(range(1, len(ROWS)), 40))
        assert encode(GzipEncoder(b"h\n"), ROWS, splits) == whole
        position = Position(sheet=1, sheet_first=True, sheet_last=False)
        assert encode(XlsxEncoder(("a",), position), ROWS, splits) == encode(XlsxEncoder(("a",), position), ROWS, [])


def test_gzip_members_concatenate_to_the_file_and_carry_no_time():
    third = len(ROWS) // 3
    pieces = [ROWS[:third], ROWS[third : 2 * third], ROWS[2 * third :]]
    members = [encode(GzipEncoder(b"id,name,x\n" if i == 0 else b""), p, []) for i, p in enumerate(pieces)]
    assert gzip.decompress(b"".join(members)) == b"id,name,x\n" + ROWS
    assert all(m[4:8] == b"\0\0\0\0" for m in members)  # MTIME 0: the same bytes on every run


def test_plain_encoder_counts_raw_bytes_and_hands_blocks_back_uncopied():
    enc = encoder(Output("csv"), ("a",), Position(first=True), b"a\n")
    data = encode(enc, b"1\n2\n", [2])
    assert data == b"a\n1\n2\n" and enc.raw_size == 6
    block = bytearray(b"3\n")
    assert enc.feed(block) is block  # the caller digests it (its CRC is the part's): no second CRC, no copy
    assert encoder(Output("csv"), ("a",), Position(first=False), b"a\n").begin() == b""


def test_xlsx_chunks_and_workbook_make_a_file_openpyxl_reads():
    """Two sheets of two chunks each, written in file order as the finalizer lays them out."""
    rows = [[b"<row><c><v>%d</v></c></row>\n" % (s * 100 + n) for n in range(100)] for s in range(2)]
    book, out = Workbook(), io.BytesIO()
    for sheet, sheet_rows in enumerate(rows, 1):
        for half in (0, 1):
            position = Position(
                first=sheet == 1 and half == 0, sheet=sheet, sheet_first=half == 0, sheet_last=half == 1
            )
            enc = XlsxEncoder(("n",), position)
            data = encode(enc, b"".join(sheet_rows[half * 50 : half * 50 + 50]), [])
            out.write(data)
            out.write(book.after_chunk(position, len(data), enc.raw_size, enc.raw_crc32))
    out.write(book.trailer())
    assert zipfile.ZipFile(out).testzip() is None
    workbook = openpyxl.load_workbook(out, read_only=True)
    assert workbook.sheetnames == ["Sheet1", "Sheet2"]
    for sheet, ws in enumerate(workbook.worksheets):
        values = [v[0] for v in ws.iter_rows(values_only=True)]
        assert values == ["n", *range(sheet * 100, sheet * 100 + 100)]
