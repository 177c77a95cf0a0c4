"""VQ-VAE objective pieces (van den Oord et al. 2017, arXiv 1711.00937, eq. 3), one value per example ``(B,)``.

``loss = recon + ||sg(z_e) - e||² + β·||z_e - sg(e)||²``: the codebook term is dropped when the codebook follows
exponential moving averages. Squared norms are summed over the latent grid and channels of each example, as the
reconstruction terms are summed over its pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor


def commitment_loss(z_e: Tensor, codewords: Tensor) -> Tensor:
    """``||z_e - sg(e)||²`` per example: pulls the encoder outputs ``(B, D, ...)`` towards their codes."""
    return (z_e - codewords.detach()).square().flatten(1).sum(1)


def codebook_loss(z_e: Tensor, codewords: Tensor) -> Tensor:
    """``||sg(z_e) - e||²`` per example: pulls the chosen codebook vectors towards the encoder outputs."""
    return (z_e.detach() - codewords).square().flatten(1).sum(1)


def squared_error(recon: Tensor, x: Tensor) -> Tensor:
    """``||x - x̂||²`` summed over the pixels of each example: the ``"mse"`` reconstruction loss, ``(B,)``."""
    return (recon - x).square().flatten(1).sum(1)


def perplexity(counts: Tensor) -> Tensor:
    """``exp(H(p))`` of the code frequencies ``p = counts / Σ counts``: the effective number of codes used, a scalar.

    1 when a single code is used, ``K`` when all ``K`` codes are used equally often.
    """
    p = counts.double() / counts.sum().clamp(min=1)
    return torch.exp(-torch.special.xlogy(p, p).sum()).float()
