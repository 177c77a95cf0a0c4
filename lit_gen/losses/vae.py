"""VAE objective pieces (Kingma & Welling 2013, arXiv 1312.6114; β-VAE: Higgins et al. 2017), per example in nats.

Likelihoods of the decoder's outputs (``-log p(x|z)``): Bernoulli on [0, 1] intensities, Gaussian with a fixed or a
learned standard deviation, and the discretized logistic of 8-bit pixels (Salimans et al. 2017, PixelCNN++, arXiv
1701.05517; Kingma et al. 2016, arXiv 1606.04934). Per-example functions return shape ``(B,)``; the module averages
over the batch.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Likelihood = Literal["bernoulli", "gaussian", "discretized_logistic"]
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian", "discretized_logistic")


def params_per_pixel(likelihood: str) -> int:
    """How many decoder output channels one image channel needs: 2 (loc, log-scale) for the discretized logistic,
    1 (logit or mean) otherwise."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
    return 2 if likelihood == "discretized_logistic" else 1


def reparameterize(mu: Tensor, logvar: Tensor, rng: torch.Generator | None = None) -> Tensor:
    """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``: differentiable in ``mu`` and ``logvar``."""
    # randn_like draws the same numbers from the global generator and, unlike randn(generator=None), exports to ONNX
    eps = (
        torch.randn_like(mu) if rng is None else torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=rng)
    )
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form ``KL(N(mu, exp(logvar)) || N(0, 1))`` of each latent dimension: ``(B, D) -> (B, D)``."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form ``KL(N(mu, exp(logvar)) || N(0, I))`` summed over latent dims: ``(B, D) -> (B,)``."""
    return gaussian_kl_per_dim(mu, logvar).sum(dim=1)


def free_bits_kl(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """The free-bits KL term of Kingma et al. 2016 (IAF, arXiv 1606.04934, eq. 15): ``Σ_j max(λ, E_batch[KL_j])``.

    Each latent dimension's KL, averaged over the batch, is clamped from below at ``λ = free_bits`` nats, so the
    optimiser gains nothing by pushing a dimension's rate under λ (a guard against posterior collapse).

    Args:
        kl_per_dim: ``(B, D)``, from :func:`gaussian_kl_per_dim`.
        free_bits: λ in nats per dimension (0 = the plain KL).

    Returns:
        A scalar: the batch's KL term per example.
    """
    return kl_per_dim.mean(0).clamp(min=free_bits).sum()


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-log p(x|z)`` for pixels ``x`` in [0, 1] under Bernoulli(sigmoid(logits)), summed per example."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_nll(mean: Tensor, x: Tensor, std: float | Tensor) -> Tensor:
    """``-log N(x; mean, std² I)`` summed per example (a density: it can be negative).

    ``std`` is a float or a tensor that broadcasts against one image, e.g. a learned scalar (σ-VAE, Rybkin et al.
    2021, arXiv 2006.13202).
    """
    log_std = torch.log(torch.as_tensor(std, dtype=x.dtype, device=x.device))
    per_pixel = 0.5 * ((x - mean) * torch.exp(-log_std)).square() + log_std + 0.5 * math.log(2 * math.pi)
    return per_pixel.flatten(1).sum(1)


def discretized_logistic_nll(
    loc: Tensor, log_scale: Tensor, x: Tensor, value_range: tuple[float, float] = (0.0, 1.0), bins: int = 256
) -> Tensor:
    """``-log P(x)`` of pixels on ``bins`` evenly spaced levels under a logistic discretized into those bins.

    Salimans et al. 2017 (PixelCNN++, arXiv 1701.05517), one component: the probability of a pixel is the logistic's
    mass on its bin ``[x - h, x + h]`` (``h`` half a bin), the first bin takes all mass below it and the last all mass
    above, so the probabilities of the ``bins`` levels sum to 1 and ``nll / (D·ln 2)`` is a true bits/dim.

    Args:
        loc: ``(B, C, H, W)`` logistic locations, in the data's pixel range.
        log_scale: ``(B, C, H, W)`` log-scales (clamped at -7 as in PixelCNN++).
        x: ``(B, C, H, W)`` pixels at the levels ``low + k·(high - low)/(bins - 1)``, e.g. 8-bit images as
            lit_gen's DataModules deliver them in their ``value_range``.
        value_range: ``(low, high)`` of the pixels.
        bins: number of levels (256 for 8 bits).

    Returns:
        ``(B,)`` nats.
    """
    low, high = value_range
    half = 0.5 * (high - low) / (bins - 1)
    log_scale = log_scale.clamp(min=-7.0)
    inv_scale = torch.exp(-log_scale)
    centered = x - loc
    plus, minus = inv_scale * (centered + half), inv_scale * (centered - half)
    log_cdf_plus = F.logsigmoid(plus)  # the first bin: all mass below its upper edge
    log_survival_minus = -F.softplus(minus)  # the last bin: all mass above its lower edge
    mass = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_scale * centered
    log_density_mid = mid - log_scale - 2.0 * F.softplus(mid)  # for bins too narrow to difference the CDF stably
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_density_mid + math.log(2 * half))
    log_p = torch.where(x < low + half, log_cdf_plus, torch.where(x > high - half, log_survival_minus, log_mass))
    return -log_p.flatten(1).sum(1)


def reconstruction_nll(
    params: Tensor,
    x: Tensor,
    likelihood: str,
    std: float | Tensor = 0.1,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """``-log p(x|z)`` per example, by likelihood name: decoder outputs ``params`` are logits (``bernoulli``), means
    (``gaussian``, standard deviation ``std``) or ``(loc, log_scale)`` stacked along the channels
    (``discretized_logistic``, ``(B, 2C, H, W)``, pixels of 8 bits in ``value_range``)."""
    if likelihood == "bernoulli":
        return bernoulli_nll(params, x)
    if likelihood == "gaussian":
        return gaussian_nll(params, x, std)
    if likelihood == "discretized_logistic":
        loc, log_scale = params.chunk(2, dim=1)
        return discretized_logistic_nll(loc, log_scale, x, value_range)
    raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")


def likelihood_mean(params: Tensor, likelihood: str, value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """The mean (for the logistic: the location) of p(x|z) in the pixel range: ``sigmoid(logits)`` for Bernoulli,
    the decoder output for Gaussian, the clamped location for the discretized logistic."""
    if likelihood == "bernoulli":
        return torch.sigmoid(params)
    if likelihood == "discretized_logistic":
        return params.chunk(2, dim=1)[0].clamp(*value_range)
    return params


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
