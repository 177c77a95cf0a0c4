"""Convolutional VAE encoder and decoder (Kingma & Welling 2013, arXiv 1312.6114) on the DCGAN stages.

The encoder is the DCGAN discriminator's conv stack with a linear head that outputs ``(mu, logvar)``; the decoder is
the DCGAN generator without an output activation, so it returns logits (Bernoulli) or means (Gaussian).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from lit_gen.nets.dcgan import DCGANGenerator, conv_features
from lit_gen.nets.shapes import square_conv_plan


class ConvEncoder(nn.Module):
    """Images ``(B, *image_shape)`` -> ``(mu, logvar)``, each ``(B, latent_dim)``.

    Args:
        image_shape: ``(channels, height, width)``, square with side base·2^n (8, 28, 32, 64, ...).
        latent_dim: size of ``z``.
        width: channels of the first conv stage, doubled at each stage.
        norm: ``"batch"`` or ``"none"``.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        width: int = 32,
        norm: Literal["batch", "none"] = "batch",
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "ConvEncoder")
        self.image_shape = (channels, side, side)
        self.latent_dim = latent_dim
        self.features = conv_features(channels, width, n, norm)
        self.head = nn.Linear(width * 2 ** (n - 1) * base * base, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W)`` -> ``(mu, logvar)``."""
        return self.head(self.features(x).flatten(1)).chunk(2, dim=1)  # type: ignore[return-value]


class ConvDecoder(DCGANGenerator):
    """``z (B, latent_dim)`` -> ``(B, *image_shape)`` logits or means (no output activation by default)."""

    def __init__(
        self,
        latent_dim: int = 16,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 32,
        output_activation: Literal["tanh", "sigmoid", "none"] = "none",
    ) -> None:
        super().__init__(latent_dim, image_shape, width, output_activation)
