"""Checkpoints that survive faults: written atomically, and written when training dies of an exception."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO


class SaveOnException(L.Callback):
    """Writes ``on_exception.ckpt`` into the ModelCheckpoint's directory when training dies of an exception.

    The file stays only when training ended in an exception (it is removed after a normal end), and
    ``lit-gen fit ... --ckpt_path last`` resumes from it when it is newer than ``last.ckpt``. It does what Lightning's
    ``OnExceptionCheckpoint`` does without being one: Lightning turns ``fit(ckpt_path=None)`` into ``"last"`` whenever
    an ``OnExceptionCheckpoint`` is present, so a new run silently resumed any ``last.ckpt`` or stray
    ``on_exception.ckpt`` in its directories.

    Args:
        dirpath: where to write; default: the directory of the trainer's ModelCheckpoint, else ``default_root_dir``.
        filename: file name without ``.ckpt``.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "on_exception") -> None:
        if not filename:
            raise ValueError("filename cannot be empty")
        self.dirpath, self.filename = dirpath, filename
        self._explicit = dirpath is not None

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath or ".", self.filename + ".ckpt")

    def _resolve(self, trainer: L.Trainer) -> None:
        # ModelCheckpoint resolves its directory in its own setup, which Lightning runs after the other callbacks'.
        if not self._explicit:
            model_checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]  # type: ignore[attr-defined]
            self.dirpath = (model_checkpoints[0].dirpath if model_checkpoints else None) or trainer.default_root_dir

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resolve(trainer)

    def on_exception(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.dirpath is None:
            self._resolve(trainer)
        trainer.save_checkpoint(self.ckpt_path)
        if trainer.is_global_zero:
            print(f"lit-gen: training stopped by an exception; its state is saved in {self.ckpt_path}", flush=True)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is not None:  # a normal end: the file is stale
            trainer.strategy.remove_checkpoint(self.ckpt_path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same directory, fsyncs it, then renames it into place.

    A process killed during a save (SIGKILL, power loss) leaves the previous checkpoint intact: ``os.replace`` within a
    directory is atomic on POSIX and Windows. Lightning's own save goes through fsspec's temporary file in the system
    temp directory, which is a copy rather than a rename when that is another file system. ``lit-gen`` installs this
    plugin by default; in Python pass ``Trainer(plugins=[AtomicCheckpointIO()])``. Remote paths (``s3://``...) are
    left to Lightning.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return None
