"""Convolutional encoder and decoder of the VQ-VAE (van den Oord et al. 2017, arXiv 1711.00937, section 4.1).

The encoder has ``downsample`` stride-2 4×4 convolutions, a 3×3 convolution and residual blocks (ReLU, 3×3 conv,
ReLU, 1×1 conv), then a 1×1 convolution to ``code_dim`` channels: a grid of latent vectors, one code each after
quantization. The decoder mirrors it with stride-2 4×4 transposed convolutions. 28×28 images give a 7×7 grid with
the default two stages, 32×32 an 8×8 grid (the paper's CIFAR-10 setting), 8×8 digits a 4×4 grid with one stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from lit_gen.nets.init_args import RecordsInitArgs
from lit_gen.nets.shapes import make_activation, square_conv_plan


class ResidualStack(nn.Module):
    """``blocks`` residual blocks ``x + conv1x1(relu(conv3x3(relu(x))))`` and a final ReLU: ``(B, C, H, W)`` kept."""

    def __init__(self, channels: int, blocks: int = 2, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or channels
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(), nn.Conv2d(channels, hidden, 3, 1, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, channels, 1)
            )
            for _ in range(blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x.relu()


def latent_side(image_shape: Sequence[int], downsample: int | None, owner: str) -> tuple[int, int, int]:
    """``(channels, stages, grid side)`` for a square image: ``downsample`` stride-2 stages (default: up to 2)."""
    channels, side, _, n = square_conv_plan(image_shape, owner)
    stages = min(2, n) if downsample is None else downsample
    if not 1 <= stages <= n:
        raise ValueError(
            f"{owner}: downsample must be between 1 and {n} for {side}×{side} images (the side halves at each stage "
            f"and must stay even above 7), got {downsample}"
        )
    return channels, stages, side // 2**stages


class VQEncoder(RecordsInitArgs, nn.Module):
    """Images ``(B, *image_shape)`` -> latents ``(B, code_dim, g, g)`` with ``g = side / 2**downsample``.

    Args:
        image_shape: ``(channels, height, width)``, square with side base·2^n (8, 28, 32, 64, ...).
        code_dim: channels of the output, the size of each latent vector (the quantizer's ``code_dim``).
        width: channels of the last stride-2 stage and the residual blocks; earlier stages halve it.
        downsample: number of stride-2 stages; default 2 (one for 8×8 images).
        res_blocks: residual blocks after the stride-2 stages (2 in the paper).
        res_width: hidden channels of the residual blocks; default ``width``.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        code_dim: int = 64,
        width: int = 64,
        downsample: int | None = None,
        res_blocks: int = 2,
        res_width: int | None = None,
    ) -> None:
        super().__init__()
        channels, stages, grid = latent_side(image_shape, downsample, "VQEncoder")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.code_dim, self.grid = code_dim, (grid, grid)
        layers: list[nn.Module] = []
        ch = channels
        for i in range(stages):
            out = max(1, width // 2 ** (stages - 1 - i))
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.ReLU()]
            ch = out
        layers += [
            nn.Conv2d(ch, width, 3, 1, 1),
            ResidualStack(width, res_blocks, res_width),
            nn.Conv2d(width, code_dim, 1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, S, S) -> (B, code_dim, g, g)``."""
        return self.net(x)


class VQDecoder(RecordsInitArgs, nn.Module):
    """Latents ``(B, code_dim, g, g)`` -> ``(B, out_channels, S, S)`` logits, means or logistic parameters.

    Args:
        code_dim: channels of the input latents.
        image_shape: ``(channels, height, width)`` of the output, as for :class:`VQEncoder`.
        width: channels of the residual blocks and the first transposed convolution; later stages halve it.
        downsample: number of stride-2 stages to undo; default 2 (one for 8×8 images).
        res_blocks: residual blocks before the upsampling stages.
        res_width: hidden channels of the residual blocks; default ``width``.
        output_activation: ``"none"`` (logits for Bernoulli, means for MSE/Gaussian), ``"sigmoid"`` or ``"tanh"``.
        out_channels: channels of the output; default the image's. ``2·C`` for the discretized logistic likelihood
            (location and log-scale of each pixel).
    """

    def __init__(
        self,
        code_dim: int = 64,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        downsample: int | None = None,
        res_blocks: int = 2,
        res_width: int | None = None,
        output_activation: Literal["tanh", "sigmoid", "none"] = "none",
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        channels, stages, grid = latent_side(image_shape, downsample, "VQDecoder")
        channels = out_channels or channels
        self.image_shape = tuple(int(s) for s in image_shape)
        self.code_dim, self.grid = code_dim, (grid, grid)
        layers: list[nn.Module] = [nn.Conv2d(code_dim, width, 3, 1, 1), ResidualStack(width, res_blocks, res_width)]
        ch = width
        for i in range(stages):
            last = i == stages - 1
            out = channels if last else max(1, ch // 2)
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1))
            if not last:
                layers.append(nn.ReLU())
            ch = out
        layers.append(make_activation(output_activation))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, code_dim, g, g) -> (B, C, S, S)``."""
        return self.net(z)
