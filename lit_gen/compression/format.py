"""The byte format of one compressed grid of codes: a small header, then the payload.

Header: one byte ``version << 4 | batched << 3 | method``, then LEB128 varints: the codebook size ``K``, the number
of grid dimensions and each grid size (5 bytes for a 7×7 grid of up to 127 codes, 6 for up to 16,383). The payload is
the codes bit-packed at ``ceil(log2 K)`` bits each (``FIXED``), or range-coded under the code frequencies
(``FREQUENCY``) or under the frequencies at each grid position (``POSITION``). A ``batched`` string holds the codes
of several images, its first grid dimension counting them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

VERSION = 1
FIXED, FREQUENCY, POSITION = 0, 1, 2
METHODS = {"fixed": FIXED, "frequency": FREQUENCY, "position": POSITION}


class Header(NamedTuple):
    """What a compressed byte string declares about itself."""

    method: int
    num_codes: int
    grid: tuple[int, ...]
    batched: bool = False


def write_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, the high bit set on every byte but the last."""
    if value < 0:
        raise ValueError(f"varints are unsigned, got {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """``(value, position after it)``; a varint running past the end of ``data`` is an error."""
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("the compressed data ends inside its header: it is truncated or not lit_gen VQ codes")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def write_header(header: Header) -> bytes:
    """The header's bytes."""
    parts = [
        bytes([VERSION << 4 | int(header.batched) << 3 | header.method]),
        write_varint(header.num_codes),
        write_varint(len(header.grid)),
    ]
    return b"".join(parts + [write_varint(s) for s in header.grid])


def read_header(data: bytes) -> tuple[Header, int]:
    """``(header, offset of the payload)``, after checking the version and method."""
    if not data:
        raise ValueError("the compressed data is empty")
    version, batched, method = data[0] >> 4, bool(data[0] & 0x08), data[0] & 0x07
    if version != VERSION or method not in METHODS.values():
        raise ValueError(
            f"the compressed data starts with byte {data[0]:#04x}: not lit_gen VQ codes of format version {VERSION}"
        )
    num_codes, pos = read_varint(data, 1)
    ndim, pos = read_varint(data, pos)
    grid = []
    for _ in range(ndim):
        size, pos = read_varint(data, pos)
        grid.append(size)
    if num_codes < 1 or min(grid, default=1) < 1 or (batched and not grid):
        raise ValueError(f"the compressed data declares {num_codes} codes on a {grid} grid: it is damaged")
    return Header(method, num_codes, tuple(grid), batched), pos


def bits_per_code(num_codes: int) -> int:
    """``ceil(log2 K)``: the bits of one code in the fixed-length format (0 for a single code)."""
    return math.ceil(math.log2(num_codes)) if num_codes > 1 else 0


def pack_fixed(codes: np.ndarray, num_codes: int) -> bytes:
    """Codes ``(N,)`` in ``[0, K)`` -> ``ceil(N·b / 8)`` bytes: ``b = ceil(log2 K)`` bits each, high bits first."""
    b = bits_per_code(num_codes)
    if b == 0:
        return b""
    bits = (codes.astype(np.int64)[:, None] >> np.arange(b - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).ravel()).tobytes()


def unpack_fixed(payload: bytes, num_codes: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack_fixed`: ``count`` codes, int64."""
    b = bits_per_code(num_codes)
    if b == 0:
        return np.zeros(count, dtype=np.int64)
    if len(payload) != math.ceil(count * b / 8):
        raise ValueError(f"the payload holds {len(payload)} bytes but {count} codes of {b} bits need "
                         f"{math.ceil(count * b / 8)}: the data is truncated or damaged")  # fmt: skip
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: count * b].reshape(count, b).astype(np.int64)
    codes = (bits << np.arange(b - 1, -1, -1)).sum(1)
    if codes.max(initial=0) >= num_codes:
        raise ValueError(f"the payload holds a code >= {num_codes}: the data is damaged")
    return codes
