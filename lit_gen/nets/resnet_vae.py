"""ResNet VAE encoder and decoder: residual blocks (He et al. 2016, arXiv 1512.03385) around a Gaussian latent.

The layout is the ResNet VAE of Kingma et al. 2016 (IAF, arXiv 1606.04934) and NVAE (Vahdat & Kautz 2020,
arXiv 2007.03898) without their hierarchy of latents: one ``z`` of ``latent_dim`` entries, residual blocks that halve
the side in the encoder and double it in the decoder, and channels that double at each halving (as in NVAE). The
blocks are the pre-activation SNGAN blocks of ``resnet.py`` (Miyato et al. 2018, arXiv 1802.05957, after Gulrajani
et al. 2017, arXiv 1704.00028) with batch norm before every ReLU:

- encoder: SNGAN's optimized first block (image -> ``width`` channels at side S/2), then ``DownBlock(norm=True)``
  stages to the side ``base`` of ``shapes.square_conv_plan`` (28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 8 -> 4), BN-ReLU,
  flatten and one linear layer to ``(mu, logvar)``;
- decoder: a linear layer from ``z`` to ``(width·2^(n-1), base, base)``, ``UpBlock`` stages back to side S, then
  BN-ReLU-conv3×3 to ``out_channels`` with no output activation.

``blocks_per_stage`` (default 2) is the number of residual blocks per resolution: the encoder follows each halving
block with ``blocks_per_stage - 1`` blocks that keep the side (``DownBlock(downsample=False, norm=True)``), the decoder
puts as many before each doubling block, so the two mirror each other. At the defaults (``width=64``) the pair has
about 1.5 M parameters for 28×28×1 and 5.2 M for 32×32×3; ``width=32`` gives 0.46 M for 28×28×1.

Batch norm rather than group norm: the SNGAN blocks already use it, and NVAE puts it back into its residual cells
(it notes that the VAEs before it left batch norm out for fear of instability). In training mode each example's
output depends on the rest of its batch, so evaluate likelihoods in ``eval()`` mode (running statistics).

Initialisation is that of ``resnet.py`` (the SNGAN authors' code): Xavier uniform with gain √2 for the 3×3 convs in
the residual branches, gain 1 for the 1×1 shortcuts, the linear layers and the output conv, biases 0, batch norms at
scale 1 and shift 0; class embeddings keep torch's N(0, 1). The convs inside the blocks have no bias (as in
torchvision's ResNet): each feeds a batch norm, directly or through the residual stream, which every path leaves through
a batch norm, so a bias there would get no gradient in training (and Adam would move it on rounding noise alone).

Class conditioning (``num_classes > 0``, a conditional VAE as in Sohn et al., NeurIPS 2015): both nets concatenate a
learned class embedding of ``latent_dim`` entries, the encoder to its flattened features before the linear head, the
decoder to ``z`` (as ``DCGANGenerator`` does). Concatenation rather than the conditional batch norm of
``ResNetGenerator``: those start at gain 1 and shift 0 for every class, so a decoder built on them would ignore the
label at initialisation and get it only through the batch-norm terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_gen.nets.conditioning import check_labels
from lit_gen.nets.init_args import RecordsInitArgs
from lit_gen.nets.resnet import DownBlock, UpBlock
from lit_gen.nets.shapes import square_conv_plan


def _linear(fan_in: int, fan_out: int) -> nn.Linear:
    linear = nn.Linear(fan_in, fan_out)
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def _without_conv_biases(blocks: list[nn.Module]) -> nn.Sequential:
    """``nn.Sequential(*blocks)`` with the bias of every conv removed (each one feeds a batch norm)."""
    for m in nn.ModuleList(blocks).modules():
        if isinstance(m, nn.Conv2d):
            m.register_parameter("bias", None)
    return nn.Sequential(*blocks)


def _check_args(latent_dim: int, width: int, num_classes: int, blocks_per_stage: int, owner: str) -> None:
    if latent_dim < 1 or width < 1:
        raise ValueError(f"{owner} needs latent_dim >= 1 and width >= 1, got latent_dim={latent_dim}, width={width}")
    if num_classes < 0:
        raise ValueError(f"{owner}: num_classes must be 0 (unconditional) or positive, got {num_classes}")
    if blocks_per_stage < 1:
        raise ValueError(f"{owner}: blocks_per_stage must be at least 1 (the resampling block), got {blocks_per_stage}")


class ResNetEncoder(RecordsInitArgs, nn.Module):
    """Images ``(B, *image_shape)`` (and labels ``(B,)``) -> ``(mu, logvar)``, each ``(B, latent_dim)``.

    Args:
        image_shape: ``(channels, height, width)``, square with side base·2^n (8, 28, 32, 64, ...).
        latent_dim: size of ``z``.
        width: channels after the first block (side S/2); each further halving of the side doubles them, so the last
            feature map is ``(width·2^(n-1), base, base)``.
        num_classes: > 0 makes it class-conditional (a conditional VAE): ``forward(x, labels)`` then needs int64
            labels of shape ``(B,)``, whose embedding (``latent_dim`` entries) joins the features before the head.
        blocks_per_stage: residual blocks per resolution, the first of which halves the side.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 16,
        width: int = 64,
        num_classes: int = 0,
        blocks_per_stage: int = 2,
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "ResNetEncoder")
        _check_args(latent_dim, width, num_classes, blocks_per_stage, "ResNetEncoder")
        self.image_shape = (channels, side, side)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        blocks: list[nn.Module] = []
        for stage in range(n):
            cin, cout = (channels if stage == 0 else width * 2 ** (stage - 1)), width * 2**stage
            blocks.append(DownBlock(cin, cout, downsample=True, optimized=stage == 0, norm=True))
            blocks += [DownBlock(cout, cout, downsample=False, norm=True) for _ in range(blocks_per_stage - 1)]
        self.blocks = _without_conv_biases(blocks)
        top = width * 2 ** (n - 1)
        self.bn = nn.BatchNorm2d(top)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.head = _linear(top * base * base + (latent_dim if num_classes else 0), 2 * latent_dim)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W)`` (and int64 labels ``(B,)`` when conditional) -> ``(mu, logvar)``, each ``(B, L)``."""
        labels = check_labels(labels, self.num_classes, x.shape[0], "ResNetEncoder")
        h = F.relu(self.bn(self.blocks(x))).flatten(1)
        if self.embed is not None and labels is not None:
            h = torch.cat([h, self.embed(labels)], dim=1)
        mu, logvar = self.head(h).chunk(2, dim=1)
        return mu, logvar


class ResNetDecoder(RecordsInitArgs, nn.Module):
    """``z`` ``(B, latent_dim)`` (and labels ``(B,)``) -> ``(B, out_channels, H, W)``, no output activation.

    The output is logits (Bernoulli likelihood), means (Gaussian) or, with ``out_channels = 2·C``, the per-pixel
    ``(loc, log_scale)`` of a discretized logistic likelihood.

    Args:
        latent_dim: size of ``z``.
        image_shape: the data's ``(channels, height, width)``, square with side base·2^n (8, 28, 32, 64, ...).
        width: channels at full resolution and at side S/2; each halving of the side towards ``base`` doubles them,
            mirroring ``ResNetEncoder``.
        out_channels: channels of the output; ``None`` means the data's ``C``.
        num_classes: > 0 makes it class-conditional: ``forward(z, labels)`` then needs int64 labels of shape
            ``(B,)``, whose embedding (``latent_dim`` entries) is concatenated to ``z``.
        blocks_per_stage: residual blocks per resolution, the last of which doubles the side.
    """

    def __init__(
        self,
        latent_dim: int = 16,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        out_channels: int | None = None,
        num_classes: int = 0,
        blocks_per_stage: int = 2,
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "ResNetDecoder")
        _check_args(latent_dim, width, num_classes, blocks_per_stage, "ResNetDecoder")
        if out_channels is not None and out_channels < 1:
            raise ValueError(f"ResNetDecoder: out_channels must be positive or None (the data's C), got {out_channels}")
        self.latent_dim = latent_dim
        self.image_shape = (channels, side, side)
        self.out_channels = channels if out_channels is None else out_channels
        self.num_classes = num_classes
        self.top, self.base = width * 2 ** (n - 1), base
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.linear = _linear(latent_dim * (2 if num_classes else 1), self.top * base * base)
        blocks: list[nn.Module] = []
        for stage in range(n):
            cin, cout = width * 2 ** max(n - 1 - stage, 0), width * 2 ** max(n - 2 - stage, 0)
            blocks += [DownBlock(cin, cin, downsample=False, norm=True) for _ in range(blocks_per_stage - 1)]
            blocks.append(UpBlock(cin, cout))
        self.blocks = _without_conv_biases(blocks)
        self.bn = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, self.out_channels, 3, 1, 1)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, latent_dim)`` (and int64 labels ``(B,)`` when conditional) -> ``(B, out_channels, H, W)``."""
        labels = check_labels(labels, self.num_classes, z.shape[0], "ResNetDecoder")
        if self.embed is not None and labels is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        h = self.linear(z).reshape(z.shape[0], self.top, self.base, self.base)
        return self.out(F.relu(self.bn(self.blocks(h))))
