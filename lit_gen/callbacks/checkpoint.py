"""A checkpoint when training dies of an exception (a NaN loss, a bug, Ctrl-C), next to the run's other ones."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint


class SaveOnException(OnExceptionCheckpoint):
    """Lightning's ``OnExceptionCheckpoint``, writing ``on_exception.ckpt`` into the ModelCheckpoint's directory.

    The file stays only when training ended in an exception (Lightning removes it after a normal end), and
    ``lit-gen fit ... --ckpt_path last`` resumes from it when it is newer than ``last.ckpt``.

    Args:
        dirpath: where to write; default: the directory of the trainer's ModelCheckpoint, else ``default_root_dir``.
        filename: file name without ``.ckpt``.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "on_exception") -> None:
        super().__init__(dirpath or ".", filename)
        self._explicit = dirpath is not None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ModelCheckpoint resolves its directory in its own setup, which Lightning runs after the other callbacks'.
        if not self._explicit:
            model_checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]  # type: ignore[attr-defined]
            self.dirpath = (model_checkpoints[0].dirpath if model_checkpoints else None) or trainer.default_root_dir

    def on_exception(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_exception(trainer, *args, **kwargs)
        if trainer.is_global_zero:
            print(f"lit-gen: training stopped by an exception; its state is saved in {self.ckpt_path}", flush=True)
