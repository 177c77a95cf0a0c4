"""Pieces the nets share for class conditioning, spectral normalization and PacGAN packing (no Lightning).

- Projection discriminator: Miyato & Koyama 2018 (arXiv 1802.05637), ``logit = ψ(φ(x)) + <embed(y), φ(x)>``.
- Spectral normalization: Miyato et al. 2018 (arXiv 1802.05957), torch's ``parametrizations.spectral_norm``.
- Packing: Lin et al. 2018, PacGAN (arXiv 1712.04086): D judges ``m`` samples at once, stacked along channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def check_labels(labels: Tensor | None, num_classes: int, batch: int, owner: str) -> Tensor | None:
    """Validate labels for a net with ``num_classes`` (0 = unconditional): int64, shape ``(B,)``, in ``[0, K)``.

    The range is checked for CPU tensors only (on an accelerator it would cost a device sync per call; GANModule
    checks the data's class count once per fit and ``sample``'s labels), and not while tracing or compiling.

    Raises:
        ValueError: labels missing for a conditional net, given to an unconditional one, or of the wrong
            dtype, shape or range.
    """
    if num_classes == 0:
        if labels is not None:
            raise ValueError(
                f"{owner} is unconditional (num_classes=0) but got labels; build it with num_classes=K for a "
                "class-conditional model, or do not pass labels"
            )
        return None
    if labels is None:
        raise ValueError(
            f"{owner} is class-conditional (num_classes={num_classes}) but got no labels; pass int64 labels of "
            "shape (B,), or build it with num_classes=0"
        )
    if labels.dtype != torch.int64 or labels.shape != (batch,):
        raise ValueError(
            f"{owner} needs int64 labels of shape ({batch},), got {labels.dtype} of shape {tuple(labels.shape)}; "
            "convert them with labels.long().reshape(-1)"
        )
    check_range = labels.device.type == "cpu" and not (torch.jit.is_tracing() or torch.compiler.is_compiling())
    if batch and check_range and bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(
            f"{owner} has num_classes={num_classes} but got labels in [{int(labels.min())}, {int(labels.max())}]; "
            f"labels must lie in [0, {num_classes}), or build the net with more classes"
        )
    return labels


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap every conv, linear and embedding weight of ``module`` in torch's spectral normalization (in place)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            spectral_norm(m)
    return module


class Projection(nn.Module):
    """The class term of a projection discriminator: ``<embed(y), φ(x)>``, shape ``(B,)``.

    Args:
        num_classes: number of classes.
        features: size of ``φ(x)``.
    """

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, phi: Tensor, labels: Tensor) -> Tensor:
        """``φ(x)`` ``(B, F)`` and labels ``(B,)`` -> ``(B,)``."""
        return (self.embed(labels) * phi).sum(1)


def pack(x: Tensor, m: int) -> Tensor:
    """Stack groups of ``m`` consecutive samples along the channel axis: ``(B, C, ...) -> (B // m, m·C, ...)``.

    A batch that ``m`` does not divide loses its last ``B mod m`` samples.
    """
    if m == 1:
        return x
    n = x.shape[0] - x.shape[0] % m
    if n == 0:
        raise ValueError(f"pack={m} needs batches of at least {m} samples, got {x.shape[0]}: raise the batch size")
    return x[:n].reshape(n // m, m * x.shape[1], *x.shape[2:])


def packed_shape(shape: Sequence[int], m: int) -> tuple[int, ...]:
    """The shape of one discriminator input for data of ``shape`` packed ``m`` at a time: ``(m·C, ...)``."""
    return (m * int(shape[0]), *(int(s) for s in shape[1:]))
