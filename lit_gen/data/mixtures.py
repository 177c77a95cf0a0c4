"""The 2D Gaussian mixtures of VEEGAN and PacGAN (arXiv 1705.07761, 1712.04086) as a DataModule."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from lit_gen.data.base import ImageDataModule
from lit_gen.metrics.mixtures import MixtureName, sample_mixture


class MixtureDataModule(ImageDataModule):
    """Points ``(B, 2)`` (float32) with their mode index ``(B,)``: ``ring`` (8 modes, std 0.01 on the unit circle)
    or ``grid`` (25 modes, std 0.05 at {-4,-2,0,2,4}²), each split drawn once from ``seed``.

    Args:
        mixture: ``"ring"`` or ``"grid"``.
        num_train: training points.
        num_val: validation points.
        num_test: test points; PacGAN scores 2,500 generated points, and the GAN makes one per test point.
        batch_size, seed, num_workers, drop_last: as in :class:`ImageDataModule`.
    """

    def __init__(
        self,
        *,
        mixture: MixtureName = "ring",
        num_train: int = 100_000,
        num_val: int = 2_500,
        num_test: int = 2_500,
        batch_size: int = 500,
        seed: int = 0,
        num_workers: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers, drop_last=drop_last)
        sample_mixture(mixture, 1)  # an unknown name fails here
        if min(num_train, num_val, num_test) < 1:
            raise ValueError(f"every split needs points, got {num_train}, {num_val}, {num_test}")
        self.mixture = mixture
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        rng = torch.Generator().manual_seed(self.seed)
        self.splits = {split: TensorDataset(*sample_mixture(self.mixture, n, rng)) for split, n in self.sizes.items()}
        self.image_shape = (2,)  # type: ignore[assignment]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch  # already float points

    def state_dict(self) -> dict[str, Any]:
        return {"mixture": self.mixture, "sizes": self.sizes}
