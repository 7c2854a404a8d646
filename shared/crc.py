"""CRC-32 of a whole made of parts: combining the parts' CRCs without their bytes.

Invariant: :func:`crc32_combine` computes exactly what zlib's ``crc32_combine`` does (the
CRC-32 of IEEE 802.3 / zip / gzip / PNG, the one :func:`zlib.crc32` computes), by the GF(2)
matrix method of zlib's ``crc32.c``: appending ``n`` zero bytes to a message is a linear map
of its CRC register, represented as a 32x32 bit matrix; the maps for ``2^k`` zero bytes are
squares of each other, so combining costs O(log n) matrix-vector products whatever the
lengths. Those powers do not depend on the data and are computed once per process.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

CRC32_POLYNOMIAL = 0xEDB88320  # the reflected CRC-32 polynomial of zlib (x^32 + x^26 + ... + 1)
CRC32_ALGORITHM = "crc32"  # how the checksum's algorithm is named in the API
_BITS = 32

Matrix = tuple[int, ...]  # 32 columns; column i is the image of the register bit i


def _times(matrix: Matrix, vector: int) -> int:
    """The matrix times a 32-bit vector over GF(2) (zlib's ``gf2_matrix_times``)."""
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _square(matrix: Matrix) -> Matrix:
    """The matrix times itself (zlib's ``gf2_matrix_square``)."""
    return tuple(_times(matrix, column) for column in matrix)


@cache
def _zeros_operator(power: int) -> Matrix:
    """The map of the CRC register that appends ``2**power`` zero bytes."""
    if power == 0:
        # One zero bit: shift right, feeding back the polynomial when bit 0 falls out.
        one_bit = (CRC32_POLYNOMIAL,) + tuple(1 << n for n in range(_BITS - 1))
        two_bits = _square(one_bit)
        four_bits = _square(two_bits)
        return _square(four_bits)  # eight zero bits: one zero byte
    return _square(_zeros_operator(power - 1))


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``.

    Args:
        crc1: the CRC-32 of the first part (as :func:`zlib.crc32` returns it).
        crc2: the CRC-32 of the second part.
        len2: the length in bytes of the second part (0 or less: ``crc1`` is returned).

    Returns:
        ``zlib.crc32(A + B)``, an unsigned 32-bit integer.
    """
    if len2 <= 0:
        return crc1
    power = 0
    while len2:
        if len2 & 1:
            crc1 = _times(_zeros_operator(power), crc1)
        len2 >>= 1
        power += 1
    return (crc1 ^ crc2) & 0xFFFFFFFF


def crc32_of_parts(parts: Iterable[tuple[int, int]]) -> int:
    """The CRC-32 of the concatenation of parts given in order as ``(crc32, length)``."""
    total = 0
    for crc, length in parts:
        total = crc32_combine(total, crc, length)
    return total


def crc32_hex(value: int) -> str:
    """A CRC-32 as the API shows it: 8 lowercase hex digits (``zlib.crc32(b"a")`` → ``e8b7be43``)."""
    return f"{value & 0xFFFFFFFF:08x}"
