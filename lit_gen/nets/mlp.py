"""Multi-layer perceptrons for small images and vectors: GAN generator/discriminator, VAE encoder/decoder.

``image_shape`` is the shape of one example: ``(C, H, W)`` for images, ``(2,)`` for the 2D mixtures.

Goodfellow et al. 2014 (arXiv 1406.2661) used MLPs of this kind for MNIST; they train in seconds on 8×8 digits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lit_gen.nets.conditioning import PicklableSpectralNorm, Projection, apply_spectral_norm, check_labels
from lit_gen.nets.init_args import RecordsInitArgs
from lit_gen.nets.shapes import check_data_shape, make_activation


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU, **act_kwargs: float) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ``activation`` after every layer but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(**act_kwargs))
    return nn.Sequential(*layers)


class MLPGenerator(RecordsInitArgs, nn.Module):
    """``z (B, latent_dim)`` -> images ``(B, *image_shape)``.

    Args:
        latent_dim: size of ``z``.
        image_shape: shape of one output, ``(channels, height, width)`` or ``(D,)`` for vectors.
        hidden: widths of the hidden layers.
        output_activation: ``"tanh"`` for data in [-1, 1], ``"sigmoid"`` for [0, 1], ``"none"`` for logits.
        num_classes: > 0 makes it class-conditional, ``forward(z, labels)``: a learned class embedding of
            ``latent_dim`` entries is concatenated to ``z`` (cGAN, Mirza & Osindero 2014, arXiv 1411.1784).
    """

    def __init__(
        self,
        latent_dim: int = 32,
        image_shape: Sequence[int] = (1, 8, 8),
        hidden: Sequence[int] = (256, 256),
        output_activation: Literal["tanh", "sigmoid", "none"] = "tanh",
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = check_data_shape(image_shape)
        self.output_shape = self.image_shape  # an MLPDecoder's output may have more channels than its data
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.net = nn.Sequential(
            mlp([latent_dim * (2 if num_classes else 1), *hidden, math.prod(self.image_shape)]),
            make_activation(output_activation),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, latent_dim)`` (and labels ``(B,)`` when conditional) -> ``(B, *image_shape)``."""
        labels = check_labels(labels, self.num_classes, z.shape[0], type(self).__name__)
        if self.embed is not None and labels is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z).view(z.shape[0], *self.output_shape)


class MLPDiscriminator(RecordsInitArgs, PicklableSpectralNorm, nn.Module):
    """Images ``(B, *image_shape)`` -> logits ``(B,)``, LeakyReLU(0.2) hidden activations.

    Args:
        image_shape: shape of one input, ``(channels, height, width)`` or ``(D,)`` for vectors.
        hidden: widths of the hidden layers.
        spectral_norm: wrap every layer in spectral normalization (Miyato et al. 2018, arXiv 1802.05957).
        num_classes: > 0 adds the projection term ``<embed(y), h(x)>`` on the last hidden layer (arXiv 1802.05637);
            ``forward(x, labels)``.
        For PacGAN (``GANModule(pack=m)``) give it ``m`` times the channels: ``image_shape=(m·C, H, W)`` or ``(m·D,)``.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 8, 8),
        hidden: Sequence[int] = (256, 256),
        spectral_norm: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.image_shape = check_data_shape(image_shape)
        self.num_classes = num_classes
        body = mlp([math.prod(self.image_shape), *hidden, 1], nn.LeakyReLU, negative_slope=0.2)
        self.net, self.head = body[:-1], body[-1]
        self.projection = Projection(num_classes, hidden[-1]) if num_classes and hidden else None
        if num_classes and not hidden:
            raise ValueError("a conditional MLPDiscriminator needs at least one hidden layer for its projection")
        if spectral_norm:
            apply_spectral_norm(self)
        self._last = f"net.{len(body) - 1}."  # the key of the last layer before it became `head` (lit_gen 0.1)
        self._register_load_state_dict_pre_hook(self._rename_old_keys)

    def _rename_old_keys(self, state_dict: dict, prefix: str, *args: object) -> None:
        """Load checkpoints written before the last layer was split off as ``head``."""
        for key in [k for k in state_dict if k.startswith(prefix + self._last)]:
            state_dict[prefix + "head." + key.removeprefix(prefix + self._last)] = state_dict.pop(key)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, *image_shape)`` (and labels ``(B,)`` when conditional) -> ``(B,)``."""
        labels = check_labels(labels, self.num_classes, x.shape[0], "MLPDiscriminator")
        h = self.net(x.flatten(1))
        logits = self.head(h).flatten()
        if self.projection is not None and labels is not None:
            logits = logits + self.projection(h, labels)
        return logits


class MLPEncoder(RecordsInitArgs, nn.Module):
    """Images ``(B, *image_shape)`` -> ``(mu, logvar)``, each ``(B, latent_dim)``: the Gaussian q(z|x) of a VAE.

    Args:
        image_shape: shape of one input, ``(channels, height, width)`` or ``(D,)`` for vectors.
        latent_dim: size of ``z``.
        hidden: widths of the hidden layers.
        num_classes: > 0 makes it class-conditional (a conditional VAE), ``forward(x, labels)``: a class embedding
            of ``latent_dim`` entries is concatenated to the flattened input.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 256),
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.image_shape = check_data_shape(image_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.net = mlp([math.prod(self.image_shape) + (latent_dim if num_classes else 0), *hidden, 2 * latent_dim])

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W)`` (and labels ``(B,)`` when conditional) -> ``(mu, logvar)``."""
        labels = check_labels(labels, self.num_classes, x.shape[0], "MLPEncoder")
        h = x.flatten(1)
        if self.embed is not None and labels is not None:
            h = torch.cat([h, self.embed(labels)], dim=1)
        return self.net(h).chunk(2, dim=1)  # type: ignore[return-value]


class MLPDecoder(MLPGenerator):
    """``z (B, latent_dim)`` -> decoder outputs ``(B, out_channels, ...)``: logits for a Bernoulli likelihood by
    default.

    Args:
        latent_dim: size of ``z``.
        image_shape: shape of one example of the data.
        hidden: widths of the hidden layers.
        output_activation: ``"none"`` for a VAE.
        out_channels: size of the output's first axis; default the data's. ``2·C`` for the discretized logistic.
        num_classes: > 0 makes it class-conditional, ``forward(z, labels)``.
    """

    def __init__(
        self,
        latent_dim: int = 8,
        image_shape: Sequence[int] = (1, 8, 8),
        hidden: Sequence[int] = (256, 256),
        output_activation: Literal["tanh", "sigmoid", "none"] = "none",
        out_channels: int | None = None,
        num_classes: int = 0,
    ) -> None:
        data_shape = check_data_shape(image_shape)
        self.out_channels = out_channels or data_shape[0]
        super().__init__(latent_dim, (self.out_channels, *data_shape[1:]), hidden, output_activation, num_classes)
        self.image_shape = data_shape
