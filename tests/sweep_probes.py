"""Callbacks the wandb/sweep subprocess tests add with ``--trainer.callbacks+=tests.sweep_probes.X``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from lit_gen.callbacks import SampleGrid
from lit_gen.callbacks.wandb_run import flat_config


class SaveRankHparams(L.Callback):
    """Every process writes its module's hyperparameters (flat dotted keys) to ``<out_dir>/hparams<rank>.json``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        hparams = flat_config(json.loads(json.dumps(dict(pl_module.hparams), default=str)), "model.init_args.")
        (Path(self.out_dir) / f"hparams{trainer.global_rank}.json").write_text(json.dumps(hparams))


class RankTaggedGrid(SampleGrid):
    """A SampleGrid that also appends the rank of every process that makes a grid to ``<out_dir>/grids.txt``."""

    def __init__(self, out_dir: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.out_dir = out_dir

    def make_grid(self, trainer: L.Trainer, pl_module: L.LightningModule):  # type: ignore[no-untyped-def]
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(self.out_dir) / "grids.txt", "a") as f:
            f.write(f"{trainer.global_rank}\n")
        return super().make_grid(trainer, pl_module)
