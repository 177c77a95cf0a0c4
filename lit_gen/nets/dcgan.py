"""DCGAN generator and discriminator (Radford et al. 2015, arXiv 1511.06434) for any side base·2^n.

28×28 runs 7 -> 14 -> 28, 32×32 runs 4 -> 8 -> 16 -> 32, 64×64 adds one more stage: channel width doubles at each
stage going down, as in the paper. Class-conditional versions (``num_classes > 0``): the generator concatenates a
learned class embedding to ``z`` (as cGAN, Mirza & Osindero 2014, arXiv 1411.1784, with an embedding for the one-hot),
the discriminator adds the projection term of Miyato & Koyama 2018 (arXiv 1802.05637) on its sum-pooled features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lit_gen.nets.conditioning import PicklableSpectralNorm, Projection, apply_spectral_norm, check_labels
from lit_gen.nets.init_args import RecordsInitArgs
from lit_gen.nets.shapes import init_dcgan_weights, make_activation, square_conv_plan


class DCGANGenerator(RecordsInitArgs, nn.Module):
    """Maps ``z`` of shape ``(B, latent_dim)`` to images of shape ``(B, *image_shape)``.

    Args:
        latent_dim: size of ``z``.
        image_shape: ``(channels, height, width)``, square with side base·2^n (8, 28, 32, 64, ...).
        width: channels of the last hidden stage; stage k from the output has ``width * 2**k``.
        output_activation: ``"tanh"`` (data in [-1, 1]), ``"sigmoid"`` or ``"none"`` (logits, e.g. a VAE decoder).
        num_classes: > 0 makes the generator class-conditional, ``forward(z, labels)``; its class embedding has
            ``latent_dim`` entries and is concatenated to ``z``.
    """

    def __init__(
        self,
        latent_dim: int = 64,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        output_activation: Literal["tanh", "sigmoid", "none"] = "tanh",
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "DCGANGenerator")
        self.latent_dim = latent_dim
        self.image_shape = (channels, side, side)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        ch = width * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim * (2 if num_classes else 1), ch, base, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), make_activation(output_activation)]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, latent_dim)`` (and labels ``(B,)`` when conditional) -> ``(B, C, H, W)``."""
        labels = check_labels(labels, self.num_classes, z.shape[0], "DCGANGenerator")
        if self.embed is not None and labels is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z.reshape(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(RecordsInitArgs, PicklableSpectralNorm, nn.Module):
    """Maps images ``(B, *image_shape)`` to one logit (or critic score) per image, shape ``(B,)``.

    Args:
        image_shape: ``(channels, height, width)``, square with side base·2^n.
        width: channels of the first stage; each stride-2 stage doubles them.
        norm: ``"batch"`` as in DCGAN, or ``"none"`` (use it for WGAN-GP and R1, whose penalties are per example,
            and with spectral normalization).
        spectral_norm: wrap every layer in spectral normalization (Miyato et al. 2018, arXiv 1802.05957).
        num_classes: > 0 adds the projection term ``<embed(y), Σ_hw h(x)>`` (arXiv 1802.05637); ``forward(x, labels)``.
        For PacGAN (``GANModule(pack=m)``) build it with ``m·C`` channels: ``image_shape=(m·C, H, W)``.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        norm: Literal["batch", "none"] = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "DCGANDiscriminator")
        self.image_shape = (channels, side, side)
        self.num_classes = num_classes
        self.features = conv_features(channels, width, n, norm)
        self.head = nn.Conv2d(width * 2 ** (n - 1), 1, base, 1, 0)
        self.projection = Projection(num_classes, width * 2 ** (n - 1)) if num_classes else None
        init_dcgan_weights(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, C, H, W)`` (and labels ``(B,)`` when conditional) -> ``(B,)`` logits."""
        labels = check_labels(labels, self.num_classes, x.shape[0], "DCGANDiscriminator")
        h = self.features(x)
        logits = self.head(h).flatten()
        if self.projection is not None and labels is not None:
            logits = logits + self.projection(h.sum((2, 3)), labels)
        return logits


def conv_features(channels: int, width: int, n: int, norm: str = "batch") -> nn.Sequential:
    """``n`` stride-2 conv stages with LeakyReLU(0.2) and no norm on the first stage, as in DCGAN.

    Maps ``(B, channels, S, S)`` to ``(B, width·2^(n-1), S/2^n, S/2^n)``.
    """
    if norm not in ("batch", "none"):
        raise ValueError(f"unknown norm {norm!r}; choose 'batch' or 'none'")
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
    ch = width
    for _ in range(n - 1):
        layers.append(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=norm == "none"))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(ch * 2))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        ch *= 2
    return nn.Sequential(*layers)
