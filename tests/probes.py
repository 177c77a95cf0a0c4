"""Callbacks the subprocess tests add with ``--trainer.callbacks+=tests.probes.X`` (run from the repo root)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class SaveRankWeights(L.Callback):
    """At the end of training every process saves its module's state dict as ``<out_dir>/rank<k>.pt``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
        torch.save(state, Path(self.out_dir) / f"rank{trainer.global_rank}.pt")
