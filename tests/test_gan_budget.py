"""GANModule(max_generator_steps=...) and the names LearningRateMonitor gives the two players."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger

from tests.helpers import digits, tiny_gan, trainer

STEP_LR = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)


@pytest.mark.parametrize(("n_critic", "accumulate"), [(2, 1), (1, 3)])
def test_max_generator_steps_stops_exactly(n_critic: int, accumulate: int, tmp_path: Path) -> None:
    """5 generator steps; Trainer(max_steps) would have to be 5·(n_critic + 1) and cannot express accumulation."""
    module = tiny_gan(n_critic=n_critic, accumulate_grad_batches=accumulate, max_generator_steps=5)
    t = trainer(tmp_path, max_epochs=10, limit_train_batches=4, limit_val_batches=0)
    t.fit(module, datamodule=digits())
    assert module.generator_steps.item() == 5 and module.images_seen.item() == 5 * accumulate * 16
    assert t.global_step == 5 * (n_critic + 1)
    assert t.current_epoch < 10  # stopped early, mid-run (the group spans epochs when accumulating)


def test_max_generator_steps_holds_across_a_resume(tmp_path: Path) -> None:
    first = tiny_gan(max_generator_steps=3)
    t = trainer(tmp_path, max_epochs=10, limit_train_batches=4, limit_val_batches=0)
    t.fit(first, datamodule=digits())
    t.save_checkpoint(tmp_path / "three.ckpt")
    assert first.generator_steps.item() == 3
    more = tiny_gan(max_generator_steps=7)  # a larger budget continues to exactly 7
    t = trainer(tmp_path, max_epochs=10, limit_train_batches=4, limit_val_batches=0)
    t.fit(more, datamodule=digits(), ckpt_path=tmp_path / "three.ckpt")
    assert more.generator_steps.item() == 7 and t.global_step == 14
    spent = tiny_gan(max_generator_steps=3)  # resumed at its budget: no further step
    t = trainer(tmp_path, max_epochs=10, limit_train_batches=4, limit_val_batches=0)
    t.fit(spent, datamodule=digits(), ckpt_path=tmp_path / "three.ckpt")
    assert spent.generator_steps.item() == 3 and t.global_step == 6


def test_bad_max_generator_steps_is_refused() -> None:
    with pytest.raises(ValueError, match="max_generator_steps must be >= 1 or None, got 0"):
        tiny_gan(max_generator_steps=0)


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_learning_rates_are_logged_per_player_at_the_scheduler_interval(interval: str, tmp_path: Path) -> None:
    module = tiny_gan(generator_scheduler=STEP_LR, discriminator_scheduler=STEP_LR, scheduler_interval=interval)
    monitor = LearningRateMonitor()
    t = trainer(
        tmp_path,
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=0,
        callbacks=[monitor],
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
    )
    t.fit(module, datamodule=digits())
    assert set(monitor.lrs) == {"lr-generator", "lr-discriminator"}
    if interval == "step":  # logged before each of the 6 batches, halved after every generator step
        assert monitor.lrs["lr-generator"] == pytest.approx([2e-4 * 0.5**k for k in range(6)])
    else:  # logged at each epoch start, halved at each epoch end
        assert monitor.lrs["lr-discriminator"] == pytest.approx([2e-4, 1e-4])


def test_learning_rates_without_schedulers_name_the_players(tmp_path: Path) -> None:
    monitor = LearningRateMonitor()
    t = trainer(tmp_path, limit_train_batches=2, limit_val_batches=0, callbacks=[monitor], logger=CSVLogger(tmp_path))
    t.fit(tiny_gan(), datamodule=digits())
    assert set(monitor.lrs) == {"lr-Adam/generator", "lr-Adam-1/discriminator"}
