"""The 2D Gaussian mixtures of the mode-collapse literature and PacGAN's way of scoring them.

Lin et al. 2018, PacGAN (arXiv 1712.04086), after VEEGAN (Srivastava et al. 2017, arXiv 1705.07761): ``ring`` is
8 Gaussians of std 0.01 evenly spaced on the unit circle; ``grid`` is 25 Gaussians of std 0.05 at {-4,-2,0,2,4}².
A sample is high quality when it lies within 3 std of its nearest mode; a mode is covered when it holds at least one
high-quality sample; the reverse KL compares the histogram of high-quality samples over modes with the uniform one.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric

MixtureName = Literal["ring", "grid"]


def mixture_modes(name: MixtureName) -> tuple[Tensor, float]:
    """``(modes (M, 2), std)`` of a named mixture."""
    if name == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], 1), 0.01
    if name == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
        return torch.cartesian_prod(axis, axis), 0.05
    raise ValueError(f"unknown mixture {name!r}; choose 'ring' or 'grid'")


def sample_mixture(name: MixtureName, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` points ``(n, 2)`` (float32) drawn uniformly over the modes, and their mode indices ``(n,)``."""
    modes, std = mixture_modes(name)
    labels = torch.randint(len(modes), (n,), generator=generator)
    points = modes[labels] + std * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return points.float(), labels


class ModeCoverage(Metric):
    """PacGAN's scores of generated 2D points: ``modes`` covered, ``high_quality`` share and ``reverse_kl``.

    Args:
        mixture: ``"ring"`` or ``"grid"``.
    """

    full_state_update = False

    def __init__(self, mixture: MixtureName = "ring", **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        modes, self.std = mixture_modes(mixture)
        self.mixture = mixture
        self.register_buffer("modes", modes.float(), persistent=False)
        self.add_state("hq_counts", default=torch.zeros(len(modes), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, points: Tensor) -> None:
        """Generated points ``(B, 2)``."""
        points = points.detach().float().reshape(len(points), -1)
        if points.shape[1] != 2:
            raise ValueError(f"mode coverage scores 2D points, got shape {tuple(points.shape)}")
        dist, nearest = torch.cdist(points, self.modes.to(points.device)).min(1)
        hq = dist <= 3 * self.std
        self.hq_counts += torch.bincount(nearest[hq], minlength=len(self.modes))
        self.total += len(points)

    def compute(self) -> dict[str, Tensor]:
        counts = self.hq_counts.double()
        m = len(counts)
        p = counts / counts.sum() if counts.sum() > 0 else torch.full_like(counts, float("nan"))
        reverse_kl = torch.where(p > 0, p * (p * m).log(), torch.zeros_like(p)).sum()
        if counts.sum() == 0:
            reverse_kl = torch.tensor(float("inf"), dtype=torch.float64)
        return {
            "modes": (counts > 0).sum().double(),
            "high_quality": counts.sum() / self.total.clamp(min=1),
            "reverse_kl": reverse_kl,
        }
