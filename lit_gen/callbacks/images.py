"""Sample grids during training (logged to wandb, TensorBoard or PNG files) and a prediction writer (PNG files),
with torchvision's ``make_grid``/``save_image``; grids are made on rank 0 only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lit_gen.callbacks.image_log import ImageLogCallback, run_dir


def value_range_of(trainer: L.Trainer) -> tuple[float, float]:
    """The pixel range of the trainer's datamodule (``value_range``), (-1, 1) when it has none."""
    return tuple(getattr(trainer.datamodule, "value_range", (-1.0, 1.0)))  # type: ignore[return-value]


def to_unit(images: Tensor, value_range: tuple[float, float]) -> Tensor:
    """Map images from ``value_range`` to [0, 1] (clamped), on the CPU in float32."""
    low, high = value_range
    return ((images.detach().float().cpu() - low) / (high - low)).clamp_(0, 1)


class SampleGrid(ImageLogCallback):
    """A grid of samples from fixed noise, every ``every_n_epochs`` epochs and/or ``every_n_steps`` steps.

    Works with any module that has ``sample(n, rng)`` (for ``GANModule`` the EMA generator when there is one, for
    ``VAEModule`` decoded prior samples). The same seed gives the same noise every time, so the grids show one set of
    latents evolving. Logged as ``images/samples`` to WandbLogger/TensorBoardLogger, else saved as
    ``<run dir>/samples/epoch=NNN.png`` (see :class:`ImageLogCallback` for ``png``).

    Args:
        num_samples: images in the grid.
        nrow: images per row.
        every_n_epochs: a grid after every n-th epoch and the last one (0 = none by epoch).
        every_n_steps: a grid after every n-th training step (0 = off).
        seed: seed of the fixed noise.
        png: write PNG files (None: only when no image logger is attached).
    """

    name = "samples"

    def __init__(
        self,
        num_samples: int = 64,
        nrow: int = 8,
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
        seed: int = 0,
        png: bool | None = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, every_n_steps=every_n_steps, png=png)
        self.num_samples, self.nrow, self.seed = num_samples, nrow, seed

    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Tensor:
        if not callable(getattr(pl_module, "sample", None)):
            raise TypeError(f"SampleGrid needs a module with sample(n, rng); {type(pl_module).__name__} has none")
        rng = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        images = pl_module.sample(self.num_samples, rng=rng)  # type: ignore[operator]
        return make_grid(to_unit(images, value_range_of(trainer)), nrow=self.nrow, padding=2)


class ImageWriter(BasePredictionWriter):
    """Writes what ``predict_step`` returns (a dict of image batches) as PNG files under ``output_dir``.

    Each key gets a folder of single images (``samples/000000.png``, ...) and a grid of its first batch
    (``samples_grid.png``). ``lit-gen predict --ckpt_path ... --predict_writer.output_dir DIR``.

    Args:
        output_dir: where to write; default ``<log_dir>/predictions``.
        grid_nrow: images per row in the grids.
        overwrite: write into an ``output_dir`` that already holds files (otherwise that is an error).
    """

    def __init__(self, output_dir: str | None = None, grid_nrow: int = 8, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.overwrite = overwrite
        self.grid_nrow = grid_nrow
        self.written: dict[str, int] = {}
        self.directory = Path(output_dir) if output_dir else None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.written = {}
        self.directory = Path(self.output_dir) if self.output_dir else run_dir(trainer) / "predictions"
        if self.directory.is_dir() and any(self.directory.iterdir()) and not self.overwrite:
            count = sum(1 for p in self.directory.rglob("*") if p.is_file())
            raise FileExistsError(
                f"{self.directory} already holds {count} files; nothing was written. Choose another "
                "ImageWriter output_dir (--predict_writer.output_dir=DIR), or set its overwrite=True "
                "(--predict_writer.overwrite=true) to write over them"
            )
        trainer.strategy.barrier()  # every process has checked before any writes

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, dict):
            prediction = {"samples": prediction}
        root = self.directory
        assert root is not None
        value_range = value_range_of(trainer)
        for key, images in prediction.items():
            images = to_unit(images, value_range)
            folder = root / key
            folder.mkdir(parents=True, exist_ok=True)
            if batch_idx == 0 and trainer.global_rank == 0:
                save_image(images, root / f"{key}_grid.png", nrow=self.grid_nrow, padding=2)
            names = [f"{i:06d}" for i in batch_indices] if batch_indices else self._fallback_names(trainer, key, images)
            for name, image in zip(names, images, strict=True):
                save_image(image, folder / f"{name}.png")
            self.written[key] = self.written.get(key, 0) + len(images)

    def _fallback_names(self, trainer: L.Trainer, key: str, images: Tensor) -> list[str]:
        """Running numbers per process, when the sampler does not report dataset indices."""
        start = self.written.get(key, 0)
        prefix = f"rank{trainer.global_rank}_" if trainer.world_size > 1 else ""
        return [f"{prefix}{start + i:06d}" for i in range(len(images))]

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank == 0:
            counts = ", ".join(f"{n} {k}" for k, n in self.written.items())
            print(f"lit-gen: wrote {counts} as PNG files to {os.fspath(self.directory or '')}")
