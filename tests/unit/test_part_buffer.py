"""A chunk's part buffer: the blocks kept as written (spilled to a file past its memory limit),
read back in any piece sizes, from any position, as often as botocore rewinds it."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from worker.chunks import PartBuffer

BLOCKS = st.lists(st.binary(max_size=300).map(bytearray), max_size=12)


def _read_all(buffer: PartBuffer, piece: int) -> bytes:
    out = bytearray()
    while data := buffer.read(piece):
        assert len(data) <= piece
        out += data
    return bytes(out)


@given(blocks=BLOCKS, memory=st.integers(0, 2000), pieces=st.lists(st.integers(1, 500), min_size=1, max_size=3))
def test_what_is_written_reads_back_whole_after_every_rewind(blocks, memory, pieces):
    expected = b"".join(blocks)
    with PartBuffer(memory) as buffer:
        for block in blocks:
            assert buffer.write(block) == len(block)
        assert buffer.size == len(expected)
        for piece in pieces:  # botocore rewinds the body for each retry
            assert buffer.seek(0) == 0
            assert _read_all(buffer, piece) == expected
            assert buffer.tell() == len(expected)
            assert buffer.read(piece) == b""


@given(blocks=BLOCKS, memory=st.integers(0, 2000), data=st.data())
def test_a_read_from_any_position_returns_the_bytes_from_there(blocks, memory, data):
    expected = b"".join(blocks)
    with PartBuffer(memory) as buffer:
        for block in blocks:
            buffer.write(block)
        position = data.draw(st.integers(0, len(expected) + 3))
        assert buffer.seek(position) == position
        assert bytes(buffer.read(-1)) == expected[position:]
        assert buffer.seek(-1, io.SEEK_END) == max(0, len(expected) - 1)
        assert buffer.seek(0, io.SEEK_CUR) == buffer.tell()


def test_blocks_stay_in_memory_up_to_the_limit_then_go_to_a_file():
    with PartBuffer(10) as buffer:
        buffer.write(bytearray(b"12345"))
        buffer.write(bytearray(b"67890"))
        assert isinstance(buffer.read(3), memoryview)  # not copied
        buffer.write(b"x")  # past 10 bytes: everything moves to a temporary file
        buffer.seek(0)
        assert buffer.read(100) == b"1234567890x"
