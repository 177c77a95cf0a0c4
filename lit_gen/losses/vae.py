"""VAE objective pieces (Kingma & Welling 2013, arXiv 1312.6114; β-VAE: Higgins et al. 2017), per example in nats.

All functions return one value per example, shape ``(B,)``; the module averages over the batch.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Likelihood = Literal["bernoulli", "gaussian"]


def reparameterize(mu: Tensor, logvar: Tensor, rng: torch.Generator | None = None) -> Tensor:
    """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``: differentiable in ``mu`` and ``logvar``."""
    eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=rng)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form ``KL(N(mu, exp(logvar)) || N(0, I))`` summed over latent dims: ``(B, D) -> (B,)``."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-log p(x|z)`` for pixels ``x`` in [0, 1] under Bernoulli(sigmoid(logits)), summed per example."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_nll(mean: Tensor, x: Tensor, std: float) -> Tensor:
    """``-log N(x; mean, std^2 I)`` summed per example (a density: it can be negative)."""
    sq = ((x - mean) / std).square().flatten(1).sum(1)
    d = x[0].numel()
    return 0.5 * sq + d * (math.log(std) + 0.5 * math.log(2 * math.pi))


def reconstruction_nll(params: Tensor, x: Tensor, likelihood: str, std: float = 0.1) -> Tensor:
    """Dispatch on the likelihood name: decoder outputs ``params`` are logits (Bernoulli) or means (Gaussian)."""
    if likelihood == "bernoulli":
        return bernoulli_nll(params, x)
    if likelihood == "gaussian":
        return gaussian_nll(params, x, std)
    raise ValueError(f"unknown likelihood {likelihood!r}; choose 'bernoulli' or 'gaussian'")


def likelihood_mean(params: Tensor, likelihood: str) -> Tensor:
    """The mean of p(x|z): ``sigmoid(logits)`` for Bernoulli, the decoder output itself for Gaussian."""
    return torch.sigmoid(params) if likelihood == "bernoulli" else params


def log_normal(z: Tensor, mu: Tensor | None = None, logvar: Tensor | None = None) -> Tensor:
    """``log N(z; mu, exp(logvar))`` summed over the last dim (standard normal when ``mu``/``logvar`` are None)."""
    if mu is None or logvar is None:
        return -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)
    return -0.5 * ((z - mu).square() * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)


def importance_weighted_bound(log_px_z: Tensor, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The IWAE bound on ``log p(x)`` (Burda et al. 2015, arXiv 1509.00519), per example.

    ``log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x)`` with ``z_i ~ q(z|x)``: equal to the ELBO's one-sample estimate at
    k = 1, no lower than the ELBO in expectation, and tighter as k grows (it tends to ``log p(x)``).

    Args:
        log_px_z: ``log p(x|z_i)``, shape ``(k, B)``.
        z: the samples ``(k, B, D)``.
        mu: posterior means ``(B, D)``.
        logvar: posterior log-variances ``(B, D)``.

    Returns:
        ``(B,)``, nats.
    """
    log_w = log_px_z + log_normal(z) - log_normal(z, mu, logvar)
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
