"""The fast paths of the speed work: batches gathered in one indexing operation, training values logged only on the
steps the loggers write, a default progress bar that redraws every 10 batches."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Subset, TensorDataset
from torch.utils.data._utils.collate import default_collate

from lit_gen.cli import LitGenCLI
from lit_gen.data.batched import BatchedView, collate
from tests.helpers import digits, tiny_gan, tiny_vae


def test_batched_view_gathers_what_items_and_collate_give() -> None:
    base = TensorDataset(torch.arange(50).view(50, 1) * 10, torch.arange(50))
    nested = Subset(Subset(base, list(range(49, -1, -1))), [3, 7, 11, 20, 0])  # indices 46, 42, 38, 29, 49
    view = BatchedView(nested)
    got = collate(view.__getitems__([4, 1, 2]))
    expected = default_collate([nested[i] for i in (4, 1, 2)])
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert got[1].tolist() == [49, 42, 38] and len(view) == 5


def test_datamodule_batches_equal_the_per_item_batches_and_splits_stay_plain() -> None:
    dm = digits(batch_size=32)
    dm.setup()
    fast = next(iter(dm.val_dataloader()))
    plain = next(iter(DataLoader(dm.splits["val"], batch_size=32)))  # a user's own loader over a split works
    assert torch.equal(fast[0], plain[0]) and torch.equal(fast[1], plain[1])
    assert fast[0].dtype == torch.uint8 and fast[0].shape == (32, 1, 8, 8)


def logged_steps(log_dir: Path, key: str) -> list[int]:
    with open(log_dir / "metrics.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get(key)]


@pytest.mark.parametrize("make", [tiny_gan, lambda: tiny_vae()], ids=["gan", "vae"])
def test_training_values_are_logged_on_the_loggers_steps_and_the_epochs_last(make, tmp_path: Path) -> None:
    module = make()
    key = "train/d_real" if hasattr(module, "discriminator") else "train/kl"
    logger = CSVLogger(tmp_path)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=12, limit_val_batches=0, log_every_n_steps=5,
                        logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    dm = digits(value_range=(0.0, 1.0)) if key == "train/kl" else digits()
    logged: list[int] = []
    log = module.log

    def count(name: str, *args, **kwargs) -> None:
        if name == key:
            logged.append(trainer.fit_loop.epoch_loop._batches_that_stepped)
        log(name, *args, **kwargs)

    module.log = count
    trainer.fit(module, datamodule=dm)
    assert logged == [4, 9, 11]  # batches 5 and 10 (every 5th), and batch 12, the epoch's last
    assert logged_steps(Path(logger.log_dir), key) == [4, 9]  # what the logger wrote: every 5th, as before
    assert key in trainer.callback_metrics


def test_the_last_step_of_max_steps_is_logged(tmp_path: Path) -> None:
    module = tiny_vae(beta_schedule="linear", beta_warmup_steps=10)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert trainer.callback_metrics["train/beta"].item() == pytest.approx(0.2)  # step 2 of the warm-up


def test_the_default_progress_bar_redraws_every_ten_batches(tmp_path: Path) -> None:
    config = str(Path(__file__).resolve().parents[1] / "configs/vae/digits.yaml")
    common = ["fit", "--config", config, "--trainer.max_steps=1", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert LitGenCLI(args=common).trainer.progress_bar_callback.refresh_rate == 10
    own = LitGenCLI(args=[*common, "--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"])
    assert own.trainer.progress_bar_callback.refresh_rate == 1  # a bar the config brings is left alone
