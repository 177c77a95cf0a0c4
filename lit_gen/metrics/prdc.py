"""Precision / recall (Kynkäänniemi et al. 2019, arXiv 1904.06991) and density / coverage (Naeem et al. 2020,
arXiv 2002.09797) of generated features against real features, from k-nearest-neighbour balls."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def kth_neighbour_radii(features: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Distance of each row to its ``k``-th nearest other row: ``(N, F) -> (N,)``."""
    if len(features) <= k:
        raise ValueError(f"k={k} nearest neighbours need more than {k} samples, got {len(features)}")
    radii = [torch.cdist(part, features).kthvalue(k + 1, dim=1).values for part in features.split(chunk)]
    return torch.cat(radii)  # k + 1: the row itself is its own nearest neighbour, at distance 0


def prdc(real: Tensor, fake: Tensor, k: int = 5, chunk: int = 2048) -> dict[str, Tensor]:
    """Precision, recall, density and coverage of ``fake (M, F)`` against ``real (N, F)``.

    - precision: share of fakes inside at least one real k-NN ball;
    - recall: share of reals inside at least one fake k-NN ball;
    - density: mean number of real balls holding a fake, divided by k (can exceed 1);
    - coverage: share of real balls holding at least one fake.
    """
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = kth_neighbour_radii(real, k, chunk), kth_neighbour_radii(fake, k, chunk)
    in_real_balls = torch.zeros(len(fake), dtype=torch.long, device=fake.device)  # per fake: real balls holding it
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for start in range(0, len(real), chunk):
        d = torch.cdist(real[start : start + chunk], fake)  # (n, M)
        inside = d <= real_radii[start : start + chunk, None]
        in_real_balls += inside.sum(0)
        covered[start : start + chunk] = inside.any(1)
        recalled[start : start + chunk] = (d <= fake_radii[None, :]).any(1)
    return {
        "precision": (in_real_balls > 0).double().mean(),
        "recall": recalled.double().mean(),
        "density": in_real_balls.double().mean() / k,
        "coverage": covered.double().mean(),
    }


class PrecisionRecall(Metric):
    """Keeps every real and fake feature vector (gathered across processes) and computes :func:`prdc` on them.

    Args:
        k: neighbours that define each sample's ball (Kynkäänniemi et al. use 3, Naeem et al. 5).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, k: int = 5, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.add_state("real", default=[], dist_reduce_fx="cat")
        self.add_state("fake", default=[], dist_reduce_fx="cat")

    def update(self, real: Tensor, fake: Tensor) -> None:
        """``real (N, F)`` and ``fake (M, F)`` feature batches."""
        self.real.append(real.detach().float())  # type: ignore[attr-defined]
        self.fake.append(fake.detach().float())  # type: ignore[attr-defined]

    def compute(self) -> dict[str, Tensor]:
        return prdc(dim_zero_cat(self.real), dim_zero_cat(self.fake), self.k)  # type: ignore[attr-defined]
