"""One grid of VQ codes <-> one self-describing byte string (header + payload, see :mod:`.format`)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lit_gen.compression.entropy import range_decode, range_encode
from lit_gen.compression.format import (
    FIXED,
    METHODS,
    Header,
    pack_fixed,
    read_header,
    unpack_fixed,
    write_header,
)

Method = Literal["fixed", "frequency", "position"]


def encode_codes(codes: Tensor, num_codes: int, method: Method = "frequency",
                 probabilities: np.ndarray | None = None, batched: bool = False) -> bytes:  # fmt: skip
    """Codes ``(*grid)`` int64 in ``[0, K)`` -> bytes.

    Args:
        codes: one example's codes, e.g. ``(7, 7)``, or with ``batched`` those of ``B`` examples, ``(B, 7, 7)``.
        num_codes: the codebook size ``K``.
        method: ``"fixed"`` (``ceil(log2 K)`` bits a code), or range-coded under ``probabilities``: ``"frequency"``
            (one model for every code) or ``"position"`` (one model per grid position).
        probabilities: float64 model, e.g. :func:`~.entropy.code_probabilities`: ``(K,)`` for ``"frequency"``,
            ``(*grid, K)`` for ``"position"`` (the grid of one example).
        batched: record that the first dimension of ``codes`` counts examples (one header for all of them).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    flat = codes.detach().cpu().reshape(-1).numpy().astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= num_codes):
        raise ValueError(f"codes must lie in [0, {num_codes}), got [{flat.min()}, {flat.max()}]")
    header = write_header(Header(METHODS[method], num_codes, tuple(codes.shape), batched))
    if method == "fixed":
        return header + pack_fixed(flat, num_codes)
    grid = tuple(codes.shape[1:] if batched else codes.shape)
    return header + range_encode(flat, _model(probabilities, num_codes, method, grid, flat.size))


def decode_codes(data: bytes, num_codes: int, probabilities: np.ndarray | None = None) -> Tensor:
    """The inverse of :func:`encode_codes`: ``(B, *grid)`` int64, the grid read from the header (``B = 1`` unless
    the data is ``batched``)."""
    header, offset = read_header(data)
    if header.num_codes != num_codes:
        raise ValueError(
            f"the data holds codes of a {header.num_codes}-code codebook but this model has {num_codes}: "
            "decompress with the model that compressed it"
        )
    count = math.prod(header.grid)
    if header.method == FIXED:
        flat = unpack_fixed(data[offset:], num_codes, count)
    else:
        method = "frequency" if header.method == METHODS["frequency"] else "position"
        grid = header.grid[1:] if header.batched else header.grid
        flat = range_decode(data[offset:], _model(probabilities, num_codes, method, grid, count), count)
    codes = torch.from_numpy(flat).view(header.grid)
    return codes if header.batched else codes.unsqueeze(0)


def _model(
    probabilities: np.ndarray | None, num_codes: int, method: str, grid: tuple[int, ...], count: int
) -> np.ndarray:
    """The coder's probabilities, checked: ``(K,)``, or ``(count, K)`` with the per-position rows tiled over a batch."""
    shape = (num_codes,) if method == "frequency" else (*grid, num_codes)
    if probabilities is None or tuple(probabilities.shape) != shape:
        got = "none" if probabilities is None else f"shape {tuple(probabilities.shape)}"
        raise ValueError(
            f"method {method!r} needs code probabilities of shape {shape}, got {got}; count the codes on the "
            "training split first (VQVAEModule.count_codes), or use method 'fixed'"
        )
    if method == "frequency":
        return probabilities
    rows = probabilities.reshape(-1, num_codes)
    return np.tile(rows, (count // len(rows), 1))
