"""Convolutional VAE encoder and decoder (Kingma & Welling 2013, arXiv 1312.6114) on the DCGAN stages.

The encoder is the DCGAN discriminator's conv stack with a linear head that outputs ``(mu, logvar)``; the decoder is
the DCGAN generator without an output activation, so it returns logits (Bernoulli), means (Gaussian) or, with
``out_channels = 2·C``, the location and log-scale of a discretized logistic. With ``num_classes > 0`` both are
class-conditional (a conditional VAE, Sohn et al. 2015, NeurIPS "Learning Structured Output Representation using
Deep Conditional Generative Models"): a learned class embedding joins the encoder's features before its head and is
concatenated to ``z`` in the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lit_gen.nets.conditioning import check_labels
from lit_gen.nets.dcgan import DCGANGenerator, conv_features
from lit_gen.nets.init_args import RecordsInitArgs
from lit_gen.nets.shapes import square_conv_plan


class ConvEncoder(RecordsInitArgs, nn.Module):
    """Images ``(B, *image_shape)`` -> ``(mu, logvar)``, each ``(B, latent_dim)``.

    Args:
        image_shape: ``(channels, height, width)``, square with side base·2^n (8, 28, 32, 64, ...).
        latent_dim: size of ``z``.
        width: channels of the first conv stage, doubled at each stage.
        norm: ``"batch"`` or ``"none"``.
        num_classes: > 0 makes it class-conditional, ``forward(x, labels)``: a class embedding of ``latent_dim``
            entries is concatenated to the flattened conv features before the linear head.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        width: int = 32,
        norm: Literal["batch", "none"] = "batch",
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "ConvEncoder")
        self.image_shape = (channels, side, side)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.features = conv_features(channels, width, n, norm)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        features = width * 2 ** (n - 1) * base * base + (latent_dim if num_classes else 0)
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W)`` (and labels ``(B,)`` when conditional) -> ``(mu, logvar)``."""
        labels = check_labels(labels, self.num_classes, x.shape[0], "ConvEncoder")
        h = self.features(x).flatten(1)
        if self.embed is not None and labels is not None:
            h = torch.cat([h, self.embed(labels)], dim=1)
        return self.head(h).chunk(2, dim=1)  # type: ignore[return-value]


class ConvDecoder(DCGANGenerator):
    """``z (B, latent_dim)`` -> ``(B, out_channels, H, W)`` logits, means or logistic parameters (no output
    activation by default).

    Args:
        latent_dim: size of ``z``.
        image_shape: ``(channels, height, width)`` of the data, square with side base·2^n.
        width: channels of the last hidden stage (doubled going back up).
        output_activation: ``"none"`` for a VAE; ``"sigmoid"``/``"tanh"`` to bound the output.
        out_channels: channels of the output; default the data's. Give ``2·C`` for the discretized logistic
            likelihood (location and log-scale of each pixel).
        num_classes: > 0 makes it class-conditional, ``forward(z, labels)`` (an embedding concatenated to ``z``).
    """

    def __init__(
        self,
        latent_dim: int = 16,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 32,
        output_activation: Literal["tanh", "sigmoid", "none"] = "none",
        out_channels: int | None = None,
        num_classes: int = 0,
    ) -> None:
        channels = int(image_shape[0])
        self.out_channels = out_channels or channels
        super().__init__(latent_dim, (self.out_channels, *image_shape[1:]), width, output_activation, num_classes)
        self.image_shape = (channels, *self.image_shape[1:])
