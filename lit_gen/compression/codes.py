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
    FREQUENCY,
    METHODS,
    Header,
    pack_fixed,
    read_header,
    unpack_fixed,
    write_header,
)

Method = Literal["fixed", "frequency"]


def encode_codes(codes: Tensor, num_codes: int, method: Method = "frequency",
                 probabilities: np.ndarray | None = None, batched: bool = False) -> bytes:  # fmt: skip
    """Codes ``(*grid)`` int64 in ``[0, K)`` -> bytes.

    Args:
        codes: one example's codes, e.g. ``(7, 7)``, or with ``batched`` those of ``B`` examples, ``(B, 7, 7)``.
        num_codes: the codebook size ``K``.
        method: ``"fixed"`` (``ceil(log2 K)`` bits a code) or ``"frequency"`` (range-coded under ``probabilities``).
        probabilities: ``(K,)`` float64 model of ``"frequency"``, e.g. :func:`~.entropy.code_probabilities`.
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
    return header + range_encode(flat, _checked(probabilities, num_codes))


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
        assert header.method == FREQUENCY
        flat = range_decode(data[offset:], _checked(probabilities, num_codes), count)
    codes = torch.from_numpy(flat).view(header.grid)
    return codes if header.batched else codes.unsqueeze(0)


def _checked(probabilities: np.ndarray | None, num_codes: int) -> np.ndarray:
    if probabilities is None or len(probabilities) != num_codes:
        raise ValueError(
            f"method 'frequency' needs the probabilities of the {num_codes} codes; count the codes on the training "
            "split first (VQVAEModule.count_codes), or use method 'fixed'"
        )
    return probabilities
