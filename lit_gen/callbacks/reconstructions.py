"""VAE reconstructions during training: fixed input images beside their reconstructions, logged to wandb,
TensorBoard or PNG files (rank 0 only)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchvision.utils import make_grid

from lit_gen.callbacks.image_log import ImageLogCallback
from lit_gen.callbacks.images import to_unit, value_range_of
from lit_gen.modules.common import images_of, labels_of


class Reconstructions(ImageLogCallback):
    """Fixed input images, each followed by its reconstruction ``reconstruct(x)`` (``VAEModule``: ``decode(mu(x))``;
    a conditional VAE gets the images' labels).

    The inputs are the first ``num_images`` validation images the callback sees (the sanity check runs them before
    training by default); when training starts without any, the first training batch. They stay the same for the
    whole run. Logged as ``images/reconstructions``, else saved as ``<run dir>/reconstructions/epoch=NNN.png``.

    Args:
        num_images: inputs in the grid (each shown with its reconstruction).
        pairs_per_row: input/reconstruction pairs per row of the grid (``2 * pairs_per_row`` images).
        every_n_epochs: a grid after every n-th epoch and the last one (0 = none by epoch).
        every_n_steps: a grid after every n-th training step (0 = off).
        png: write PNG files (None: only when no image logger is attached).
    """

    name = "reconstructions"

    def __init__(
        self,
        num_images: int = 32,
        pairs_per_row: int = 4,
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
        png: bool | None = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, every_n_steps=every_n_steps, png=png)
        if num_images < 1 or pairs_per_row < 1:
            raise ValueError(f"num_images and pairs_per_row must be >= 1, got {num_images} and {pairs_per_row}")
        self.num_images, self.pairs_per_row = num_images, pairs_per_row
        self.inputs: Tensor | None = None  # (N, C, H, W) on the CPU, in the data's range
        self.labels: Tensor | None = None  # (N,) of a labelled dataset (a conditional VAE reconstructs with them)
        self._fixed = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not callable(getattr(pl_module, "reconstruct", None)):
            raise TypeError(
                f"Reconstructions needs a module with reconstruct(x), such as VAEModule; {type(pl_module).__name__} "
                "has none: remove the callback or use SampleGrid"
            )

    def _collect(self, batch: Any) -> None:
        images, labels = images_of(batch).detach().cpu(), labels_of(batch)
        self.inputs = images if self.inputs is None else torch.cat([self.inputs, images])
        self.inputs = self.inputs[: self.num_images]
        if labels is not None:
            labels = labels.detach().cpu()
            self.labels = labels if self.labels is None else torch.cat([self.labels, labels])
            self.labels = self.labels[: self.num_images]

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if trainer.is_global_zero and not self._fixed and dataloader_idx == 0:
            self._collect(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fixed = self._fixed or self.inputs is not None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.is_global_zero and self.inputs is None:
            self._collect(args[1])  # (outputs, batch, batch_idx): no validation images yet
            self._fixed = True
        super().on_train_batch_end(trainer, pl_module, *args)

    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Tensor | None:
        if self.inputs is None:
            return None
        x = self.inputs.to(pl_module.device)
        if getattr(pl_module, "num_classes", 0) and self.labels is not None:
            recon = pl_module.reconstruct(x, self.labels.to(pl_module.device))  # type: ignore[operator]
        else:
            recon = pl_module.reconstruct(x)  # type: ignore[operator]
        pairs = torch.stack([x, recon.to(x.dtype)], dim=1).flatten(0, 1)  # x0, r0, x1, r1, ...
        return make_grid(to_unit(pairs, value_range_of(trainer)), nrow=2 * self.pairs_per_row, padding=2)
