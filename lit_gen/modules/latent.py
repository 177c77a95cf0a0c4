"""Latent-space tools of a VAE: interpolations, per-dimension traversals and the rate–distortion pair per image.

Pure tensor functions plus :class:`LatentTools`, a mixin of :class:`~lit_gen.modules.vae.VAEModule` that applies them
with the module's ``encode``/``decode``. The traversal is the β-VAE disentanglement picture (Higgins et al. 2017,
ICLR): one latent dimension swept over ``[-span, span]`` while the others keep the posterior mean of an input.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lit_gen.losses.vae import gaussian_kl
from lit_gen.modules.common import eval_mode


def linear_path(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """``steps`` evenly spaced points from ``z0`` to ``z1``, both ends included: ``(B, D), (B, D) -> (B, steps, D)``."""
    if steps < 2:
        raise ValueError(f"an interpolation needs steps >= 2 (both ends), got {steps}")
    t = torch.linspace(0.0, 1.0, steps, device=z0.device, dtype=z0.dtype).view(1, steps, 1)
    return z0.unsqueeze(1) + t * (z1 - z0).unsqueeze(1)


def traversal_grid(z: Tensor, dims: list[int], steps: int, span: float) -> Tensor:
    """Copies of ``z`` with dimension ``dims[i]`` set to ``linspace(-span, span, steps)``: ``(B, D) -> (B, len(dims),
    steps, D)``."""
    if steps < 2:
        raise ValueError(f"a traversal needs steps >= 2, got {steps}")
    if any(not 0 <= d < z.shape[1] for d in dims):
        raise ValueError(f"traversal dims must lie in [0, {z.shape[1]}), got {dims}")
    values = torch.linspace(-span, span, steps, device=z.device, dtype=z.dtype)
    grid = z[:, None, None, :].repeat(1, len(dims), steps, 1)
    for i, d in enumerate(dims):
        grid[:, i, :, d] = values
    return grid


def side_by_side(*images: Tensor) -> Tensor:
    """Join image batches ``(B, C, H, W)`` left to right into ``(B, C, H, n·W)``."""
    return torch.cat(images, dim=-1)


class RateDistortion(NamedTuple):
    """Per-image rate and distortion of a Gaussian VAE, each ``(B,)``.

    Attributes:
        rate: ``KL(q(z|x) || p(z)) / ln 2`` bits: the bits-back coding rate of the latent (Hinton & van Camp 1993;
            Townsend et al. 2019, arXiv 1901.04866).
        mse: mean squared error of the mean reconstruction ``decode(mu)``, per pixel, in the data's pixel range.
        psnr: ``10·log10(range² / mse)`` dB.
    """

    rate: Tensor
    mse: Tensor
    psnr: Tensor


class LatentTools:
    """What :class:`~lit_gen.modules.vae.VAEModule` adds on top of ``encode``/``decode`` for looking at its latent
    space and for compression figures. All run in eval mode without gradients."""

    latent_dim: int

    @torch.no_grad()
    def interpolate(
        self,
        x0: Tensor,
        x1: Tensor,
        steps: int = 8,
        labels: Tensor | None = None,
        labels1: Tensor | None = None,
    ) -> Tensor:
        """Decode the straight line between the posterior means of ``x0`` and ``x1``: ``(B, C, H, W)`` pairs ->
        ``(B, steps, C, H, W)``, the first and last entries the reconstructions of ``x0`` and ``x1``.

        A conditional VAE encodes ``x0`` with ``labels`` and ``x1`` with ``labels1`` (default ``labels``), and decodes
        the whole strip as class ``labels``: with different classes the last entry is ``x1``'s latent drawn as
        ``x0``'s class (the latent holds the style, the label the class).
        """
        labels1 = labels if labels1 is None else labels1
        with eval_mode(self):  # type: ignore[arg-type]
            z0, z1 = self.encode(x0, labels)[0], self.encode(x1, labels1)[0]  # type: ignore[attr-defined]
            return self._decode_grid(linear_path(z0, z1, steps), labels)

    @torch.no_grad()
    def traverse(
        self, x: Tensor, dims: list[int] | None = None, steps: int = 8, span: float = 3.0, labels: Tensor | None = None
    ) -> Tensor:
        """Latent traversals: ``(B, C, H, W) -> (B, len(dims), steps, C, H, W)``; row ``i`` sweeps dimension
        ``dims[i]`` (default all) over ``[-span, span]`` prior standard deviations, the others at ``x``'s mean."""
        dims = list(range(self.latent_dim)) if dims is None else list(dims)
        with eval_mode(self):  # type: ignore[arg-type]
            grid = traversal_grid(self.encode(x, labels)[0], dims, steps, span)  # type: ignore[attr-defined]
            return self._decode_grid(grid, labels)

    @torch.no_grad()
    def rate_distortion(
        self, x: Tensor, labels: Tensor | None = None, value_range: tuple[float, float] | None = None
    ) -> RateDistortion:
        """The rate (KL in bits) and distortion (MSE, PSNR of ``decode(mu)``) of each image ``(B, C, H, W)``."""
        low, high = value_range or self.pixel_range  # type: ignore[attr-defined]
        with eval_mode(self):  # type: ignore[arg-type]
            mu, logvar = self.encode(x, labels)  # type: ignore[attr-defined]
            recon = self.decode(mu, labels).clamp(low, high)  # type: ignore[attr-defined]
        mse = (recon.float() - x.float()).square().flatten(1).mean(1)
        psnr = 10 * torch.log10((high - low) ** 2 / mse.clamp(min=1e-12))
        return RateDistortion(gaussian_kl(mu, logvar) / math.log(2), mse, psnr)

    def latent_outputs(
        self, x: Tensor, labels: Tensor | None, kinds: tuple[str, ...], rng: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The images ``predict`` writes, each ``(B, C, H, W')`` in the data's pixel range, for each of ``kinds``:
        ``inputs``, ``reconstructions``, ``samples`` (of ``labels`` when conditional, noise from ``rng``), ``pairs``
        ``(B, C, H, 2W)``, ``interpolations`` ``(B, C, H, steps·W)`` from each input to the next one of the batch,
        ``traversals`` ``(B, C, D·H, steps·W)`` with ``latent_steps`` steps and ``traversal_span``."""
        steps, span = self.latent_steps, self.traversal_span  # type: ignore[attr-defined]
        recon = self.reconstruct(x, labels) if {"reconstructions", "pairs"} & set(kinds) else None  # type: ignore[attr-defined]
        out: dict[str, Tensor] = {}
        for kind in kinds:
            if kind == "inputs":
                out[kind] = x
            elif kind == "reconstructions":
                out[kind] = recon  # type: ignore[assignment]
            elif kind == "samples":
                out[kind] = self.sample(x.shape[0], rng, labels)  # type: ignore[attr-defined]
            elif kind == "pairs":
                out[kind] = side_by_side(x, recon)  # type: ignore[arg-type]
            elif kind == "interpolations":
                following = None if labels is None else labels.roll(-1, 0)
                out[kind] = side_by_side(*self.interpolate(x, x.roll(-1, 0), steps, labels, following).unbind(1))
            else:
                rows = side_by_side(*self.traverse(x, None, steps, span, labels).unbind(2))  # (B, D, C, H, steps·W)
                out[kind] = torch.cat(rows.unbind(1), dim=-2)
        return out

    def _decode_grid(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Decode latents ``(B, *grid, D)`` (labels ``(B,)`` repeated over the grid) to ``(B, *grid, C, H, W)``."""
        batch, grid = z.shape[0], z.shape[1:-1]
        per = math.prod(grid)
        flat_labels = None if labels is None else labels.repeat_interleave(per)
        images = self.decode(z.reshape(batch * per, -1), flat_labels)  # type: ignore[attr-defined]
        return images.view(batch, *grid, *images.shape[1:])
