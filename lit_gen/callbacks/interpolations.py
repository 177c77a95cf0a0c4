"""Latent interpolation strips during training: each row decodes points on the path between two fixed latent
vectors, logged to wandb, TensorBoard or PNG files (rank 0 only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torchvision.utils import make_grid

from lit_gen.callbacks.image_log import ImageLogCallback
from lit_gen.callbacks.images import to_unit, value_range_of
from lit_gen.modules.common import eval_mode


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` ``(N, D)`` at fractions ``t`` ``(S,)``: ``(N, S, D)``.

    Follows the great circle between the two vectors (White 2016, "Sampling Generative Networks", arXiv 1609.04468),
    which keeps interpolants at the norm typical of Gaussian latents; nearly parallel pairs fall back to linear.
    """
    a_unit, b_unit = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_unit * b_unit).sum(1).clamp(-1.0, 1.0))[:, None]  # (N, 1)
    t = t[None, :]  # (1, S)
    so = torch.sin(omega)
    linear = so.abs() < 1e-6
    safe = torch.where(linear, torch.ones_like(so), so)
    wa = torch.where(linear, 1 - t, torch.sin((1 - t) * omega) / safe)
    wb = torch.where(linear, t, torch.sin(t * omega) / safe)
    return wa[..., None] * a[:, None] + wb[..., None] * b[:, None]


def latent_decoder(pl_module: L.LightningModule) -> Callable[[Tensor, Tensor | None], Tensor]:
    """``(z (B, latent_dim), labels) -> images`` in eval mode: ``GANModule``'s sampling (EMA) generator, or
    ``VAEModule``'s ``decode`` (the mean of p(x|z)); labels only for conditional modules (``num_classes > 0``)."""
    generator = getattr(pl_module, "sampling_generator", None)
    if generator is not None:
        conditional = bool(getattr(pl_module, "num_classes", 0))

        def generate(z: Tensor, labels: Tensor | None) -> Tensor:
            with torch.no_grad(), eval_mode(generator):
                return generator(z, labels) if conditional else generator(z)

        return generate
    decode = getattr(pl_module, "decode", None)
    if callable(decode) and hasattr(pl_module, "latent_dim"):

        def decode_z(z: Tensor, labels: Tensor | None) -> Tensor:
            with torch.no_grad(), eval_mode(pl_module):
                return decode(z, labels) if labels is not None else decode(z)

        return decode_z
    raise TypeError(
        f"Interpolations needs a GANModule (sampling_generator) or a module with decode(z) of a latent_dim-sized z "
        f"(VAEModule); {type(pl_module).__name__} has neither. A VQ-VAE has a grid of codes and no prior to "
        "interpolate in: watch it with lit_gen.callbacks.Reconstructions"
    )


class Interpolations(ImageLogCallback):
    """Rows of images decoded along the path between two fixed random latents ``z_a -> z_b``.

    For ``GANModule`` the sampling generator (the EMA copy when there is one), for ``VAEModule`` ``decode(z)``; a
    conditional module keeps class ``row % K`` along row ``row``. Logged as ``images/interpolations``, else saved as
    ``<run dir>/interpolations/epoch=NNN.png``.

    Args:
        num_rows: strips (pairs of endpoints).
        steps: images per strip, endpoints included.
        method: ``slerp`` (spherical, for Gaussian latents) or ``linear``.
        every_n_epochs: a grid after every n-th epoch and the last one (0 = none by epoch).
        every_n_steps: a grid after every n-th training step (0 = off).
        seed: seed of the endpoints.
        png: write PNG files (None: only when no image logger is attached).
    """

    name = "interpolations"

    def __init__(
        self,
        num_rows: int = 8,
        steps: int = 10,
        method: Literal["slerp", "linear"] = "slerp",
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
        seed: int = 0,
        png: bool | None = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, every_n_steps=every_n_steps, png=png)
        if num_rows < 1 or steps < 2:
            raise ValueError(f"num_rows must be >= 1 and steps >= 2, got {num_rows} and {steps}")
        if method not in ("slerp", "linear"):
            raise ValueError(f"method must be 'slerp' or 'linear', got {method!r}")
        self.num_rows, self.steps, self.method, self.seed = num_rows, steps, method, seed

    def latents(self, latent_dim: int, device: torch.device) -> Tensor:
        """The interpolated latents ``(num_rows, steps, latent_dim)`` from the fixed endpoints."""
        rng = torch.Generator(device=device).manual_seed(self.seed)
        a, b = torch.randn(2, self.num_rows, latent_dim, device=device, generator=rng)
        t = torch.linspace(0, 1, self.steps, device=device)
        if self.method == "linear":
            return a[:, None] + t[None, :, None] * (b - a)[:, None]
        return slerp(a, b, t)

    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Tensor:
        decode = latent_decoder(pl_module)
        z = self.latents(int(pl_module.latent_dim), pl_module.device)  # type: ignore[arg-type]
        labels = None
        if num_classes := int(getattr(pl_module, "num_classes", 0) or 0):
            labels = (torch.arange(self.num_rows, device=z.device) % num_classes).repeat_interleave(self.steps)
        images = decode(z.flatten(0, 1), labels)  # row-major: one strip per row
        return make_grid(to_unit(images, value_range_of(trainer)), nrow=self.steps, padding=2)
