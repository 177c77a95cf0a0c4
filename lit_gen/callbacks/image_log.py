"""Where image callbacks put their grids: the trainer's WandbLogger (``wandb.Image``), TensorBoardLogger
(``add_image``), or PNG files under the run directory when neither is there, chosen from ``trainer.loggers``."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.utils import save_image

IMAGE_LOGGERS = (WandbLogger, TensorBoardLogger)


def run_dir(trainer: L.Trainer) -> Path:
    """The run's own directory: where its config, checkpoints and PNG grids go.

    CSV/TensorBoard loggers: their ``log_dir`` (``<save_dir>/<name>/version_N``). Other loggers (WandbLogger: its
    ``save_dir``, project and run id) get the directory ``ModelCheckpoint`` uses, ``<save_dir>/<name>/<version>``, so
    that consecutive runs (a sweep) never share one. No logger: ``default_root_dir``. This is a collective under DDP
    (rank 0 decides and broadcasts): call it on every rank, never inside ``rank_zero_only`` code.
    """
    path = _local_run_dir(trainer) if trainer.is_global_zero else None
    return Path(trainer.strategy.broadcast(path))


def _local_run_dir(trainer: L.Trainer) -> str:
    if not trainer.loggers:
        return os.fspath(trainer.default_root_dir)
    logger = trainer.loggers[0]
    if isinstance(logger, (TensorBoardLogger, CSVLogger)):
        return os.fspath(logger.log_dir)
    if logger.save_dir is None:
        return os.fspath(trainer.default_root_dir)
    if isinstance(logger, WandbLogger) and logger.version is None:
        _ = logger.experiment  # starts the run, which gives the id
    version = logger.version
    version = version if isinstance(version, str) else f"version_{version}"
    return os.path.join(logger.save_dir, str(logger.name), version)


def logging_step(trainer: L.Trainer) -> int:
    """The step the loggers put on the x-axis: training batches (what Lightning's own LearningRateMonitor uses; the
    ``global_step`` counts every optimizer step, ``n_critic + 1`` per GAN batch)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def image_loggers(trainer: L.Trainer) -> list[Logger]:
    """The trainer's loggers that can show images: WandbLogger and TensorBoardLogger."""
    return [logger for logger in trainer.loggers if isinstance(logger, IMAGE_LOGGERS)]


def log_grid(trainer: L.Trainer, key: str, grid: Tensor, step: int, png: Path | None) -> Path | None:
    """Send a grid ``(3, H, W)`` in [0, 1] to every image logger of the trainer, and write ``png`` if given.

    Call on rank 0 only. WandbLogger gets ``wandb.Image`` under ``key`` with ``trainer/global_step = step`` (the
    x-axis of its metrics), TensorBoardLogger ``add_image(key, grid, step)``. Returns the PNG path written, if any.
    """
    grid = grid.detach().float().cpu().clamp(0, 1)
    for logger in image_loggers(trainer):
        if isinstance(logger, WandbLogger):
            pixels = grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # exact 8-bit, as the PNG
            logger.log_image(key=key, images=[pixels], step=step)
        else:
            logger.experiment.add_image(key, grid, global_step=step)
    if png is None:
        return None
    png.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, png)
    return png


class ImageLogCallback(L.Callback):
    """Base of the image callbacks: a grid every ``every_n_epochs`` epochs (and the last one) and every
    ``every_n_steps`` training steps, made on rank 0 only and sent to :func:`log_grid`.

    Subclasses set ``name`` (the logger key ``images/<name>`` and the PNG folder ``<run dir>/<name>/``) and implement
    :meth:`make_grid`. PNG files are named ``epoch=NNN.png`` or ``step=NNNNNNN.png`` (steps as the loggers count them).

    Args:
        every_n_epochs: a grid after every n-th training epoch and the last one (0 = none by epoch).
        every_n_steps: a grid after every n-th training step (0 = none by step).
        png: write PNG files: ``None`` (default) when the trainer has no WandbLogger or TensorBoardLogger, or
            always (``True``), or never (``False``).
    """

    name = "images"

    def __init__(self, every_n_epochs: int = 1, every_n_steps: int = 0, png: bool | None = None) -> None:
        if every_n_epochs < 0 or every_n_steps < 0:
            raise ValueError(
                f"every_n_epochs and every_n_steps must be >= 0 (0 = off), got {every_n_epochs} and {every_n_steps}"
            )
        self.every_n_epochs, self.every_n_steps, self.png = every_n_epochs, every_n_steps, png
        self.directory: Path | None = None
        self.last_path: Path | None = None
        self.logged: list[tuple[str, int]] = []  # (tag, step) of every grid made, in order
        self._logged_at = -1

    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Tensor | None:
        """The grid ``(3, H, W)`` in [0, 1] (torchvision's ``make_grid``), or None when there is nothing to show."""
        raise NotImplementedError

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.directory = run_dir(trainer) / self.name  # a collective: every rank calls setup

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        step = logging_step(trainer) + 1  # Lightning counts this step after the hook
        if trainer.is_global_zero and self.every_n_steps and step % self.every_n_steps == 0:
            self.emit(trainer, pl_module, f"step={step:07d}", step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        scheduled = self.every_n_epochs and (epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs)
        if trainer.is_global_zero and scheduled:
            self.emit(trainer, pl_module, f"epoch={trainer.current_epoch:03d}", logging_step(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step, scheduled = logging_step(trainer), self.every_n_epochs or self.every_n_steps
        if trainer.is_global_zero and scheduled and self._logged_at != step:  # stopped by max_steps, a time limit...
            self.emit(trainer, pl_module, f"step={step:07d}", step)

    def emit(self, trainer: L.Trainer, pl_module: L.LightningModule, tag: str, step: int) -> Path | None:
        """Make the grid and send it to the loggers (and the PNG file ``<directory>/<tag>.png``); rank 0 only."""
        grid = self.make_grid(trainer, pl_module)
        if grid is None:
            return None
        png = None
        if self.png or (self.png is None and not image_loggers(trainer)):
            png = (self.directory or Path(trainer.default_root_dir) / self.name) / f"{tag}.png"
        path = log_grid(trainer, f"images/{self.name}", grid, step, png)
        self.last_path = path or self.last_path
        self._logged_at = step
        self.logged.append((tag, step))
        return path
