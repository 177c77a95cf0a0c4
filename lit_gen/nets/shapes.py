"""Shape arithmetic shared by the convolutional nets (no Lightning, no state)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate a ``(channels, height, width)`` triple and return it as a tuple of ints."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (channels, height, width) with positive sizes, got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


def check_data_shape(data_shape: Sequence[int]) -> tuple[int, ...]:
    """Validate the shape of one example, ``(C, H, W)`` for images or ``(D,)`` for vectors, as a tuple of ints."""
    shape = tuple(int(s) for s in data_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"the data shape must be non-empty with positive sizes, e.g. (1, 28, 28) or (2,); got {shape}")
    return shape


def square_conv_plan(image_shape: Sequence[int], owner: str) -> tuple[int, int, int, int]:
    """Validate a square ``(C, S, S)`` for a conv net and plan its stages: returns ``(C, S, base, n)``."""
    channels, height, side = check_image_shape(image_shape)
    if height != side:
        raise ValueError(f"{owner} needs square images, got image_shape {tuple(image_shape)}")
    return (channels, side, *conv_plan(side))


def conv_plan(size: int) -> tuple[int, int]:
    """Split an image side into ``base * 2**n`` for a stack of stride-2 convolutions.

    The side is halved while it is even and larger than 7, so 28 -> 7 (n=2), 32 -> 4 (n=3), 64 -> 4 (n=4),
    8 -> 4 (n=1). This is the DCGAN recipe (Radford et al. 2015, arXiv 1511.06434) generalised to any such side.

    Returns:
        ``(base, n)``: the side of the smallest feature map and the number of stride-2 stages.
    """
    base, n = size, 0
    while base % 2 == 0 and base > 7:
        base //= 2
        n += 1
    if n == 0:
        raise ValueError(
            f"a conv net needs an even image side above 7 (e.g. 8, 28, 32, 64) for its stride-2 stages, got {size}; "
            "resize the data with the DataModule's image_size (--data.image_size=SIZE) or use the MLP nets"
        )
    return base, n


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), batch-norm scale ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def make_activation(name: str) -> nn.Module:
    """``"tanh"`` for images in [-1, 1], ``"sigmoid"`` for [0, 1], ``"none"`` for logits or means."""
    table = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": nn.Identity}
    if name not in table:
        raise ValueError(f"unknown output_activation {name!r}; choose one of {sorted(table)}")
    return table[name]()
