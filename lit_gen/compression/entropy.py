"""Range coding of codes under a fixed categorical model, by the ``constriction`` package (Bamler 2022,
arXiv 2201.01741), and the information content the coded size approaches.

The model is the code frequencies with add-one (Laplace) smoothing, so that every code can be coded:
``p_k = (n_k + 1) / (N + K)``, over the whole grid or at each grid position. Encoder and decoder compute it from the
same integer counts, so they agree bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def _constriction() -> Any:
    try:
        import constriction
    except ImportError as err:  # pragma: no cover - constriction is a dependency
        raise ImportError(
            "entropy coding of VQ codes needs the constriction package: pip install constriction "
            "(or compress with method='fixed')"
        ) from err
    return constriction


def code_probabilities(counts: Tensor | np.ndarray) -> np.ndarray:
    """Integer counts ``(..., K)`` -> float64 probabilities ``(n_k + 1) / (N + K)`` along the last axis (one model per
    grid position for counts ``(*grid, K)``)."""
    counts = np.asarray(counts.cpu() if isinstance(counts, Tensor) else counts, dtype=np.float64)
    if counts.ndim < 1 or counts.shape[-1] < 1 or (counts < 0).any():
        raise ValueError(f"code counts must be an array (..., K) of non-negative numbers, got shape {counts.shape}")
    return (counts + 1.0) / (counts.sum(-1, keepdims=True) + counts.shape[-1])


def information_bits(codes: Tensor, probabilities: np.ndarray) -> Tensor:
    """``-Σ log2 p(code)`` over the codes of each example: ``(B, *grid) -> (B,)`` float64, the ideal coded size.

    ``probabilities`` is ``(K,)`` (one model for every code) or ``(*grid, K)`` (one per grid position)."""
    log2p = torch.from_numpy(np.log2(probabilities)).to(codes.device)
    if log2p.dim() == 1:
        return -log2p[codes].flatten(1).sum(1)
    per_position = log2p.expand(len(codes), *log2p.shape).gather(-1, codes.unsqueeze(-1))
    return -per_position.flatten(1).sum(1)


def range_encode(codes: np.ndarray, probabilities: np.ndarray) -> bytes:
    """Codes ``(N,)`` -> the range coder's words as little-endian bytes (a multiple of 4).

    ``probabilities`` is ``(K,)``, one model for all codes, or ``(N, K)``, one model per code."""
    constriction = _constriction()
    encoder = constriction.stream.queue.RangeEncoder()
    if probabilities.ndim == 1:
        encoder.encode(codes.astype(np.int32), constriction.stream.model.Categorical(probabilities, perfect=False))
    else:
        family = constriction.stream.model.Categorical(perfect=False)
        encoder.encode(codes.astype(np.int32), family, np.ascontiguousarray(probabilities))
    return encoder.get_compressed().astype("<u4").tobytes()


def range_decode(payload: bytes, probabilities: np.ndarray, count: int) -> np.ndarray:
    """The inverse of :func:`range_encode`: ``count`` codes, int64 (``probabilities`` as given to it)."""
    constriction = _constriction()
    if len(payload) % 4:
        raise ValueError(f"a range-coded payload is a whole number of 4-byte words, got {len(payload)} bytes")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)  # the values, in native byte order
    decoder = constriction.stream.queue.RangeDecoder(words)
    if probabilities.ndim == 1:
        model = constriction.stream.model.Categorical(probabilities, perfect=False)
        return decoder.decode(model, count).astype(np.int64)
    family = constriction.stream.model.Categorical(perfect=False)
    return decoder.decode(family, np.ascontiguousarray(probabilities)).astype(np.int64)
