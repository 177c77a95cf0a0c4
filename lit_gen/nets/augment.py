"""Differentiable Augmentation (DiffAugment) for data-efficient GAN training.

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training", arXiv 2006.10738; the reference
is ``DiffAugment_pytorch.py`` in mit-han-lab/data-efficient-gans. The same random augmentation is applied to real
and generated images before the discriminator sees them, in both the discriminator and the generator step; since
every op is differentiable w.r.t. the image, the generator's gradient flows back through it.

The reference is written for images in [-1, 1]. Here images may lie in any ``value_range = (low, high)``: an image
is treated as ``mid + half * z`` with ``mid = (low + high) / 2``, ``half = (high - low) / 2`` and ``z`` in the
reference's [-1, 1], so the reference's 0 (what translation pads with and cutout fills with) becomes ``mid`` and the
brightness offset is scaled by ``half``. Saturation and contrast are invariant to that map and need no change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AUGMENTATIONS: tuple[str, ...] = ("color", "translation", "cutout")


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """Validate an augmentation policy, given as ``"color,translation,cutout"`` or a list of those names.

    The ops are applied in the order given. Blank entries (``""``, a trailing comma) are skipped, so ``""`` is the
    empty policy, which leaves images unchanged.

    Raises:
        ValueError: on a name not in :data:`AUGMENTATIONS` (the message lists them) or a name given twice.
    """
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    parsed = tuple(str(name).strip() for name in names if str(name).strip())
    unknown = [name for name in parsed if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown DiffAugment op(s) {unknown}; choose from {list(AUGMENTATIONS)}")
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"each DiffAugment op may appear once in the policy, got {list(parsed)}")
    return parsed


def diff_augment(
    x: Tensor,
    policy: Sequence[str],
    value_range: tuple[float, float] = (-1.0, 1.0),
    generator: torch.Generator | None = None,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
) -> Tensor:
    """Augment a batch of images with the ops in ``policy``, drawing independent parameters for every example.

    - ``"color"``: brightness ``x + (u - 0.5) * half``, saturation ``(x - mean_C) * 2u + mean_C`` and contrast
      ``(x - mean_CHW) * (u + 0.5) + mean_CHW``, each with its own ``u ~ U(0, 1)`` per example.
    - ``"translation"``: an integer shift of up to ``round(translation_ratio * H)`` rows and
      ``round(translation_ratio * W)`` columns either way, drawn independently; pixels shifted in are ``mid``.
    - ``"cutout"``: one ``round(cutout_ratio * H) x round(cutout_ratio * W)`` hole set to ``mid``. As in the
      reference its centre may lie anywhere in the image, so a hole near the border is clipped to the image.

    Args:
        x: ``(B, C, H, W)`` float images in ``value_range``.
        policy: op names from :data:`AUGMENTATIONS` (or a comma-separated string), applied in order.
        value_range: ``(low, high)`` of the images; the fill value is ``(low + high) / 2``.
        generator: source of the random parameters. They are drawn on its device and moved to ``x``'s, so a CPU
            generator with a fixed seed gives the same augmentation on any device. ``None`` uses the global RNG
            of ``x``'s device.
        translation_ratio: largest shift as a fraction of the image side, in [0, 1].
        cutout_ratio: side of the hole as a fraction of the image side, in [0, 1].

    Returns:
        ``(B, C, H, W)`` augmented images, same dtype and device as ``x``. With an empty policy ``x`` itself is
        returned and not checked, so an empty policy is a no-op for any data, images or not.
    """
    ops = parse_policy(policy)
    if not ops:
        return x
    low, high = (float(v) for v in value_range)
    if not low < high:
        raise ValueError(f"value_range must be (low, high) with low < high, got {tuple(value_range)}")
    for name, ratio in (("translation_ratio", translation_ratio), ("cutout_ratio", cutout_ratio)):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {ratio}")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"DiffAugment needs a batch of float images (B, C, H, W), got a {x.dtype} tensor of shape "
            f"{tuple(x.shape)}; it does not apply to 2-D points or flat vectors, so use an empty policy for those"
        )
    mid, half = (low + high) / 2, (high - low) / 2
    for op in ops:
        if op == "color":
            x = _contrast(_saturation(_brightness(x, generator, half), generator), generator)
        elif op == "translation":
            x = _translate(x, generator, translation_ratio, mid)
        else:
            x = _cutout(x, generator, cutout_ratio, mid)
    return x


class DiffAugment(nn.Module):
    """Differentiable Augmentation as a module (Zhao et al. 2020, arXiv 2006.10738); see :func:`diff_augment`.

    It has no parameters and augments in both train and eval mode: whoever calls it decides when.

    Args:
        policy: ops to apply, ``"color,translation,cutout"`` (the paper's choice for small data) or a list.
        value_range: ``(low, high)`` of the images, e.g. ``(-1, 1)`` after tanh or ``(0, 1)`` after sigmoid.
        translation_ratio: largest shift as a fraction of the image side.
        cutout_ratio: side of the cutout hole as a fraction of the image side.
    """

    def __init__(
        self,
        policy: str | Sequence[str] = "color,translation,cutout",
        value_range: tuple[float, float] = (-1.0, 1.0),
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.policy = parse_policy(policy)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``, fresh random parameters from the global RNG on every call."""
        return diff_augment(x, self.policy, self.value_range, None, self.translation_ratio, self.cutout_ratio)

    def extra_repr(self) -> str:
        return (
            f"policy={','.join(self.policy)!r}, value_range={self.value_range}, "
            f"translation_ratio={self.translation_ratio}, cutout_ratio={self.cutout_ratio}"
        )


def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """One ``U(0, 1)`` draw per example, shaped ``(B, 1, 1, 1)`` to broadcast over ``x``."""
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape[0], generator=generator, device=device)
    return u.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _randint(low: int, high: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """One integer in ``[low, high)`` per example, shaped ``(B,)``, on ``x``'s device."""
    device = generator.device if generator is not None else x.device
    return torch.randint(low, high, (x.shape[0],), generator=generator, device=device).to(x.device)


def _brightness(x: Tensor, generator: torch.Generator | None, half: float = 1.0) -> Tensor:
    """Add ``(u - 0.5) * half`` to every pixel of an example: a shift of up to a quarter of the value range."""
    return x + (_uniform(x, generator) - 0.5) * half


def _saturation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Scale each pixel's deviation from its channel mean by ``2u``, in [0, 2]; a no-op for one channel."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x, generator) * 2) + mean


def _contrast(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Scale each example's deviation from its mean over ``(C, H, W)`` by ``u + 0.5``, in [0.5, 1.5]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def _translate(x: Tensor, generator: torch.Generator | None, ratio: float, fill: float) -> Tensor:
    """Shift each example by its own integer ``(dy, dx)``: ``out[..., i, j] = x[..., i - dy, j - dx]`` or ``fill``.

    ``|dy| <= round(ratio * H)`` and ``|dx| <= round(ratio * W)``. Pads with ``fill`` and gathers, so the output is
    a copy of input pixels and the gradient flows to every pixel that stays in the frame.
    """
    b, c, h, w = x.shape
    pad_h, pad_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _randint(-pad_h, pad_h + 1, x, generator)
    dx = _randint(-pad_w, pad_w + 1, x, generator)
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), value=fill)  # (B, C, H + 2 pad_h, W + 2 pad_w)
    rows = torch.arange(h, device=x.device) - dy[:, None] + pad_h  # (B, H) rows of `padded` to read
    cols = torch.arange(w, device=x.device) - dx[:, None] + pad_w  # (B, W)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad_w))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def _cutout(x: Tensor, generator: torch.Generator | None, ratio: float, fill: float) -> Tensor:
    """Set one ``round(ratio * H) x round(ratio * W)`` rectangle of each example to ``fill``, all channels.

    As in the reference the centre is drawn from ``[0, H]`` (``[0, H)`` for an odd side), so a hole may be clipped
    to as little as half its side by the border. Applied as ``x * keep + fill * (1 - keep)``: the gradient is 1 on
    the kept pixels and 0 in the hole.
    """
    _, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _randint(0, h + 1 - size_h % 2, x, generator) - size_h // 2
    left = _randint(0, w + 1 - size_w % 2, x, generator) - size_w // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_h)  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_w)  # (B, W)
    keep = (~(in_rows[:, None, :, None] & in_cols[:, None, None, :])).to(x.dtype)  # (B, 1, H, W)
    return x * keep + fill * (1 - keep)
