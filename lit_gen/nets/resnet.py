"""SNGAN ResNet generator and discriminator (Miyato et al. 2018, arXiv 1802.05957, CIFAR-10 nets of Table 4).

The blocks follow the ResNet GAN of Gulrajani et al. 2017 (arXiv 1704.00028). For 32×32 the nets are exactly
SNGAN's: G runs 4 -> 8 -> 16 -> 32 with three up-sampling blocks of width 256 (about 4.3 M parameters); D has an
optimized first block, one more down-sampling block and two blocks at 8×8, width 128 (about 1.05 M). Other square
sides base·2^n (28, 64, ...) follow the same recipe (see ``conv_plan`` in ``shapes.py``).

Class conditioning (``num_classes > 0``) follows Miyato & Koyama 2018 (arXiv 1802.05637): conditional batch norm
in the generator's blocks and the projection term ``<embed(y), φ(x)>`` (their eq. 3) in the discriminator.

Initialisation follows the authors' Chainer code (pfnet-research/sngan_projection): Xavier/Glorot uniform with gain
√2 for the 3×3 convs inside the residual branches, gain 1 for the 1×1 shortcuts, the linear layers, the generator's
output conv and the projection embedding; all biases zero; conditional batch-norm gains 1 and biases 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.nets.conditioning import PicklableSpectralNorm, apply_spectral_norm, check_labels
from lit_gen.nets.init_args import RecordsInitArgs
from lit_gen.nets.shapes import make_activation, square_conv_plan


def _conv(cin: int, cout: int, kernel: int, gain: float) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, 1, kernel // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without affine terms, then a per-class gain and bias: ``(B, C, H, W)``, labels ``(B,)``.

    Args:
        channels: ``C``.
        num_classes: number of classes; gains start at 1 and biases at 0 for every class.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """``(B, C, H, W)`` and ``(B,)`` -> ``(B, C, H, W)``."""
        return self.bn(x) * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class UpBlock(nn.Module):
    """Generator block: BN-ReLU-up×2-conv3×3-BN-ReLU-conv3×3, plus up×2-conv1×1 shortcut. ``(B, C, S, S)`` ->
    ``(B, C', 2S, 2S)``; the batch norms are class-conditional when ``num_classes > 0``."""

    def __init__(self, cin: int, cout: int, num_classes: int = 0) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(cin, num_classes) if num_classes else nn.BatchNorm2d(cin)
        self.conv1 = _conv(cin, cout, 3, math.sqrt(2))
        self.bn2 = ConditionalBatchNorm2d(cout, num_classes) if num_classes else nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3, math.sqrt(2))
        self.shortcut = _conv(cin, cout, 1, 1.0)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = F.relu(_norm(self.bn1, x, labels))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(_norm(self.bn2, h, labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


def _norm(layer: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    return layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)


class DownBlock(nn.Module):
    """Discriminator block, ``(B, C, S, S)`` -> ``(B, C', S/2, S/2)`` when ``downsample`` else ``(B, C', S, S)``.

    ``optimized=True`` is SNGAN's first block: conv3×3-ReLU-conv3×3-avgpool2 with an avgpool-conv1×1 shortcut.
    Otherwise: ReLU-conv3×3-ReLU-conv3×3(-avgpool2), shortcut conv1×1(-avgpool2), or the identity when the block
    neither down-samples nor changes the width. ``norm=True`` puts a batch norm before each ReLU (for the ResNet VAE
    nets of ``resnet_vae.py``; SNGAN's discriminator has none).
    """

    def __init__(self, cin: int, cout: int, downsample: bool, optimized: bool = False, norm: bool = False) -> None:
        super().__init__()
        self.downsample = downsample or optimized
        self.optimized = optimized
        self.bn1 = nn.BatchNorm2d(cin) if norm and not optimized else None
        self.conv1 = _conv(cin, cout, 3, math.sqrt(2))
        self.bn2 = nn.BatchNorm2d(cout) if norm else None
        self.conv2 = _conv(cout, cout, 3, math.sqrt(2))
        self.shortcut = _conv(cin, cout, 1, 1.0) if self.downsample or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x if self.optimized else F.relu(x if self.bn1 is None else self.bn1(x)))
        h = self.conv2(F.relu(h if self.bn2 is None else self.bn2(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.optimized:
            return h + self.shortcut(F.avg_pool2d(x, 2))  # type: ignore[misc]
        if self.shortcut is None:
            return h + x
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.downsample else s)


class ResNetGenerator(RecordsInitArgs, nn.Module):
    """SNGAN's ResNet generator: ``z`` ``(B, latent_dim)`` (and labels ``(B,)``) -> images ``(B, *image_shape)``.

    Linear to ``(width, base, base)``, ``n`` up-sampling blocks, then BN-ReLU-conv3×3 and the output activation.

    Args:
        latent_dim: size of ``z`` (128 in SNGAN).
        image_shape: ``(channels, height, width)``, square with side base·2^n (28, 32, 64, ...).
        width: channels of every block (256 in SNGAN's CIFAR-10 generator).
        num_classes: > 0 makes it class-conditional through conditional batch norm (arXiv 1802.05637);
            ``forward(z, labels)`` then needs int64 labels of shape ``(B,)``.
        output_activation: ``"tanh"`` (data in [-1, 1]), ``"sigmoid"`` or ``"none"``.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 256,
        num_classes: int = 0,
        output_activation: Literal["tanh", "sigmoid", "none"] = "tanh",
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "ResNetGenerator")
        if num_classes < 0:
            raise ValueError(f"num_classes must be 0 (unconditional) or positive, got {num_classes}")
        self.latent_dim = latent_dim
        self.image_shape = (channels, side, side)
        self.num_classes = num_classes
        self.width, self.base = width, base
        self.linear = nn.Linear(latent_dim, width * base * base)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.blocks = nn.ModuleList(UpBlock(width, width, num_classes) for _ in range(n))
        self.bn = nn.BatchNorm2d(width)
        self.out = _conv(width, channels, 3, 1.0)
        self.activation = make_activation(output_activation)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, latent_dim)`` (and int64 labels ``(B,)`` when conditional) -> ``(B, C, H, W)``."""
        labels = check_labels(labels, self.num_classes, z.shape[0], "ResNetGenerator")
        h = self.linear(z).reshape(z.shape[0], self.width, self.base, self.base)
        for block in self.blocks:
            h = block(h, labels)
        return self.activation(self.out(F.relu(self.bn(h))))


class ResNetDiscriminator(RecordsInitArgs, PicklableSpectralNorm, nn.Module):
    """SNGAN's ResNet discriminator: images ``(B, *image_shape)`` (and labels ``(B,)``) -> logits ``(B,)``.

    An optimized first block and down-sampling blocks until the side is at most 8, then blocks at that size so there
    are at least 4 (32×32: down, down, same, same as in SNGAN), then ReLU, a sum over space ``φ(x)`` ``(B, width)``
    and ``Linear(width, 1)``. With classes, ``<embed(y), φ(x)>`` is added (projection, arXiv 1802.05637 eq. 3).

    Args:
        image_shape: ``(channels, height, width)``, square with side base·2^n. For PacGAN use ``(m·C, H, W)``.
        width: channels of every block (128 in SNGAN's CIFAR-10 discriminator).
        num_classes: > 0 adds the projection term; ``forward(x, labels)`` then needs int64 labels of shape ``(B,)``.
        spectral_norm: wrap every conv, the linear layer and the embedding in torch's spectral normalization.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        width: int = 128,
        num_classes: int = 0,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        channels, side, _, _ = square_conv_plan(image_shape, "ResNetDiscriminator")
        if num_classes < 0:
            raise ValueError(f"num_classes must be 0 (unconditional) or positive, got {num_classes}")
        self.image_shape = (channels, side, side)
        self.num_classes = num_classes
        blocks, size = [DownBlock(channels, width, downsample=True, optimized=True)], side // 2
        while size > 8 and size % 2 == 0:
            blocks.append(DownBlock(width, width, downsample=True))
            size //= 2
        blocks += [DownBlock(width, width, downsample=False) for _ in range(4 - len(blocks))]
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(width, 1)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.embed = nn.Embedding(num_classes, width) if num_classes else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        if spectral_norm:
            apply_spectral_norm(self)

    def features(self, x: Tensor) -> Tensor:
        """``φ(x)``: ``(B, C, H, W)`` -> ``(B, width)``, the ReLU'd last feature map summed over space."""
        return F.relu(self.blocks(x)).sum((2, 3))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, C, H, W)`` (and int64 labels ``(B,)`` when conditional) -> ``(B,)`` logits."""
        labels = check_labels(labels, self.num_classes, x.shape[0], "ResNetDiscriminator")
        phi = self.features(x)
        logits = self.linear(phi).squeeze(1)
        if self.embed is not None and labels is not None:
            logits = logits + (self.embed(labels) * phi).sum(1)
        return logits
