"""crc32_combine is zlib's: the CRC-32 of a concatenation from the parts' CRCs and lengths."""

from __future__ import annotations

import random
import zlib

import pytest

from shared.crc import crc32_combine, crc32_hex, crc32_of_parts


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize("seed", range(20))
def test_random_splits_combine_to_the_crc_of_the_whole(seed):
    rng = random.Random(seed)
    data = rng.randbytes(rng.randint(0, 200_000))
    parts = split(data, [rng.randint(0, len(data)) for _ in range(rng.randint(0, 12))])
    assert b"".join(parts) == data
    assert crc32_of_parts((zlib.crc32(p), len(p)) for p in parts) == zlib.crc32(data)


def test_two_parts_match_zlib_for_every_small_length():
    rng = random.Random(7)
    for len1 in range(0, 40):
        for len2 in range(0, 40):
            a, b = rng.randbytes(len1), rng.randbytes(len2)
            assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_empty_parts_change_nothing():
    data = b"id,name\n1,ultra\n"
    crc = zlib.crc32(data)
    assert crc32_combine(crc, zlib.crc32(b""), 0) == crc
    assert crc32_combine(zlib.crc32(b""), crc, len(data)) == crc
    assert crc32_of_parts([(0, 0), (crc, len(data)), (0, 0), (0, 0)]) == crc
    assert crc32_of_parts([]) == zlib.crc32(b"") == 0


def test_parts_as_large_as_real_ones():
    rng = random.Random(3)
    parts = [rng.randbytes(n) for n in (8 * 1024 * 1024 + 17, 9 * 1024 * 1024, 1, 12_345)]
    assert crc32_of_parts((zlib.crc32(p), len(p)) for p in parts) == zlib.crc32(b"".join(parts))


def test_order_matters():
    a, b = b"first part,", b"second part"
    assert crc32_combine(zlib.crc32(b), zlib.crc32(a), len(a)) != zlib.crc32(a + b)


def test_hex_is_eight_lowercase_digits():
    assert crc32_hex(zlib.crc32(b"a")) == "e8b7be43"
    assert crc32_hex(zlib.crc32(b"")) == "00000000"
    assert crc32_hex(0x1F) == "0000001f"
