"""DCGAN generator and discriminator (Radford et al. 2015, arXiv 1511.06434) for any side base·2^n.

28×28 runs 7 -> 14 -> 28, 32×32 runs 4 -> 8 -> 16 -> 32, 64×64 adds one more stage: channel width doubles at each
stage going down, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from lit_gen.nets.shapes import init_dcgan_weights, make_activation, square_conv_plan


class DCGANGenerator(nn.Module):
    """Maps ``z`` of shape ``(B, latent_dim)`` to images of shape ``(B, *image_shape)``.

    Args:
        latent_dim: size of ``z``.
        image_shape: ``(channels, height, width)``, square with side base·2^n (8, 28, 32, 64, ...).
        width: channels of the last hidden stage; stage k from the output has ``width * 2**k``.
        output_activation: ``"tanh"`` (data in [-1, 1]), ``"sigmoid"`` or ``"none"`` (logits, e.g. a VAE decoder).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        output_activation: Literal["tanh", "sigmoid", "none"] = "tanh",
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "DCGANGenerator")
        self.latent_dim = latent_dim
        self.image_shape = (channels, side, side)
        ch = width * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, ch, base, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), make_activation(output_activation)]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, latent_dim)`` -> ``(B, C, H, W)``."""
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Maps images ``(B, *image_shape)`` to one logit (or critic score) per image, shape ``(B,)``.

    Args:
        image_shape: ``(channels, height, width)``, square with side base·2^n.
        width: channels of the first stage; each stride-2 stage doubles them.
        norm: ``"batch"`` as in DCGAN, or ``"none"`` (use it for WGAN-GP and R1, whose penalties are per example).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        width: int = 64,
        norm: Literal["batch", "none"] = "batch",
    ) -> None:
        super().__init__()
        channels, side, base, n = square_conv_plan(image_shape, "DCGANDiscriminator")
        self.image_shape = (channels, side, side)
        self.features = conv_features(channels, width, n, norm)
        self.head = nn.Conv2d(width * 2 ** (n - 1), 1, base, 1, 0)
        init_dcgan_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B,)`` logits."""
        return self.head(self.features(x)).flatten()


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
