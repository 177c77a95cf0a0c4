"""Callbacks the subprocess tests add with ``--trainer.callbacks+=tests.probes.X`` (run from the repo root)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import lightning as L
import torch


class SaveRankWeights(L.Callback):
    """At the end of training every process saves its module's state dict as ``<out_dir>/rank<k>.pt``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if not hasattr(self, "first_rng"):
            self.first_rng = torch.get_rng_state()  # the state the first training step draws its noise from

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        torch.save(self.first_rng, Path(self.out_dir) / f"rng{trainer.global_rank}.pt")
        state = {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
        torch.save(state, Path(self.out_dir) / f"rank{trainer.global_rank}.pt")


class Slow(L.Callback):
    """Sleeps after every training batch (no effect on the numbers); from ``hang_at_step`` on it touches ``marker``
    and sleeps for good, so that a test can SIGKILL the run at a known step."""

    def __init__(self, seconds: float = 0.0, hang_at_step: int | None = None, marker: str | None = None) -> None:
        self.seconds, self.hang_at_step, self.marker = seconds, hang_at_step, marker

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        time.sleep(self.seconds)
        if self.hang_at_step is not None and trainer.global_step >= self.hang_at_step:
            if self.marker:
                Path(self.marker).touch()
            time.sleep(3600)


class RecordBatches(L.Callback):
    """Appends ``global_step, sum of the batch's labels, a digest of the torch RNG state`` per batch to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, i: int) -> None:
        with open(self.path, "a") as f:
            weights = sum(p.double().sum().item() for p in pl_module.parameters())
            line = f"{trainer.global_step} {int(batch[1].sum())} {int(torch.get_rng_state().sum())} {weights!r}"
            f.write(line + "\n")  # type: ignore[index]


class InjectAtBatch(L.Callback):
    """At training batch ``at``: fill the images with NaN (``what="nan"``) or raise a RuntimeError (``"error"``).

    ``weights_before`` keeps the module's state dict as it was just before that batch.
    """

    def __init__(self, at: int, what: str = "nan") -> None:
        self.at, self.what = at, what
        self.weights_before: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, i: int) -> None:
        if i == self.at and trainer.current_epoch == 0:
            self.weights_before = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            if self.what == "error":
                raise RuntimeError("injected failure")
            batch[0].fill_(float("nan"))  # type: ignore[index]


class SaveMetrics(L.Callback):
    """Rank 0 writes ``trainer.callback_metrics`` as JSON to ``path`` after validation or test."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            Path(self.path).write_text(json.dumps(metrics))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._save(trainer)


class KillAfterStep(L.Callback):
    """SIGKILLs its own process at the first hook after training step ``step`` and its checkpoints: the next batch's
    start, the start of validation or the end of the epoch, whichever comes first. Lightning runs checkpoint
    callbacks after the others, so a step checkpoint written at an epoch's last batch is on disk, and the epoch-end
    checkpoint is not."""

    def __init__(self, step: int) -> None:
        self.step = step

    def _kill_if_past(self, trainer: L.Trainer) -> None:
        if trainer.global_step >= self.step and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        self._kill_if_past(trainer)

    def on_validation_start(self, trainer: L.Trainer, *args: object) -> None:
        self._kill_if_past(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, *args: object) -> None:
        self._kill_if_past(trainer)
