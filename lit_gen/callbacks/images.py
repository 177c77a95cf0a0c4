"""Callbacks that turn model outputs into PNG files (torchvision's ``make_grid``/``save_image``), on rank 0 only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchvision.utils import save_image


def value_range_of(trainer: L.Trainer) -> tuple[float, float]:
    """The pixel range of the trainer's datamodule (``value_range``), (-1, 1) when it has none."""
    return tuple(getattr(trainer.datamodule, "value_range", (-1.0, 1.0)))  # type: ignore[return-value]


def to_unit(images: Tensor, value_range: tuple[float, float]) -> Tensor:
    """Map images from ``value_range`` to [0, 1] (clamped), on the CPU in float32."""
    low, high = value_range
    return ((images.detach().float().cpu() - low) / (high - low)).clamp_(0, 1)


def run_dir(trainer: L.Trainer) -> Path:
    """The run's log directory (where LightningCLI saves config.yaml), or ``default_root_dir``.

    ``trainer.log_dir`` is a collective under DDP (rank 0 broadcasts it): call this on every rank, never inside
    ``rank_zero_only`` code.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


class SampleGrid(L.Callback):
    """Saves a grid of samples from fixed noise as ``<log_dir>/samples/epoch=NNN.png`` every ``every_n_epochs``.

    Works with any module that has ``sample(n, rng)``; the same seed gives the same noise every time, so the grids
    show one set of latents evolving.

    Args:
        num_samples: images in the grid.
        nrow: images per row.
        every_n_epochs: how often to save.
        seed: seed of the fixed noise.
    """

    def __init__(self, num_samples: int = 64, nrow: int = 8, every_n_epochs: int = 1, seed: int = 0) -> None:
        self.num_samples, self.nrow, self.every_n_epochs, self.seed = num_samples, nrow, every_n_epochs, seed
        self.last_path: Path | None = None
        self.directory: Path | None = None
        self._saved_at = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.directory = run_dir(trainer) / "samples"

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs == 0 or epoch + 1 == trainer.max_epochs:
            self.save(trainer, pl_module, f"epoch={epoch:03d}.png")

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_at != trainer.global_step:  # stopped by max_steps, a time limit or early stopping
            self.save(trainer, pl_module, f"step={trainer.global_step:07d}.png")

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> Path:
        """Sample from the fixed noise and save the grid as ``<directory>/<name>``."""
        rng = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        images = pl_module.sample(self.num_samples, rng=rng)  # type: ignore[operator]
        path = (self.directory or run_dir(trainer) / "samples") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(to_unit(images, value_range_of(trainer)), path, nrow=self.nrow, padding=2)
        self.last_path, self._saved_at = path, trainer.global_step
        return path


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
                "--predict_writer.output_dir, or pass --predict_writer.overwrite=true to write over them"
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
