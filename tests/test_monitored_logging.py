"""Training values are logged sparsely, but always on the steps where a callback that monitors them reads them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.helpers import digits, tiny_gan, tiny_vae, trainer

BATCHES = 20


def _checkpoint_scores(tmp_path: Path, model: L.LightningModule, monitor: str, **kwargs: Any) -> dict[str, float]:
    """File name -> monitored value of every checkpoint a ``save_top_k=-1`` ModelCheckpoint wrote."""
    every = kwargs.pop("every_n_train_steps", None)
    ckpt = ModelCheckpoint(
        dirpath=tmp_path, monitor=monitor, every_n_train_steps=every, save_top_k=-1, filename="{epoch}-{step}"
    )
    value_range = (-1.0, 1.0) if monitor.startswith("train/g_") else (0.0, 1.0)
    fit_kwargs: dict[str, Any] = dict(limit_train_batches=BATCHES, limit_val_batches=0, callbacks=[ckpt])
    run = trainer(tmp_path, **(fit_kwargs | dict(enable_checkpointing=True) | kwargs))
    run.fit(model, digits(value_range=value_range))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == sorted(Path(p).name for p in ckpt.best_k_models)
    return {Path(p).name: float(v) for p, v in ckpt.best_k_models.items()}


@pytest.mark.parametrize(
    ("make", "monitor", "every", "expected_steps"),
    [
        (tiny_vae, "train/loss", 5, [5, 10, 15, 20]),  # one optimizer step a batch
        # manual optimization: global_step counts both optimizers' steps, 2 a batch (n_critic=1), so 40 in all
        (tiny_gan, "train/g_loss", 10, [10, 20, 30, 40]),
        (tiny_gan, "train/d_loss", 4, list(range(4, 41, 4))),
    ],
    ids=["vae", "gan-g", "gan-d"],
)
def test_step_checkpoints_on_a_train_metric_save_every_k_steps_with_the_value_of_that_step(
    tmp_path: Path, make: Any, monitor: str, every: int, expected_steps: list[int]
) -> None:
    sparse = _checkpoint_scores(tmp_path / "sparse", make(), monitor, every_n_train_steps=every)
    dense = _checkpoint_scores(tmp_path / "dense", make(), monitor, every_n_train_steps=every, log_every_n_steps=1)
    assert sorted(sparse) == sorted(f"epoch=0-step={s}.ckpt" for s in expected_steps)
    assert sparse == pytest.approx(dense, rel=1e-6)  # the value of the step the file was written on, not a stale one


def test_gan_step_checkpoints_with_n_critic_count_every_optimizer_step(tmp_path: Path) -> None:
    # n_critic=2: 3 optimizer steps a batch, global_step 3, 6, ..., 60; a multiple of 6 every other batch
    sparse = _checkpoint_scores(tmp_path / "sparse", tiny_gan(n_critic=2), "train/g_loss", every_n_train_steps=6)
    dense = _checkpoint_scores(
        tmp_path / "dense", tiny_gan(n_critic=2), "train/g_loss", every_n_train_steps=6, log_every_n_steps=1
    )
    assert sorted(sparse) == sorted(f"epoch=0-step={s}.ckpt" for s in range(6, 61, 6))
    assert sparse == pytest.approx(dense, rel=1e-6)


@pytest.mark.parametrize(
    ("make", "monitor", "steps"), [(tiny_vae, "train/loss", (10, 20)), (tiny_gan, "train/g_loss", (20, 40))]
)
def test_train_metric_read_after_a_mid_epoch_validation_is_the_fresh_one(
    tmp_path: Path, make: Any, monitor: str, steps: tuple[int, int]
) -> None:
    # ModelCheckpoint on a train key without every_n_train_steps saves after each validation: twice an epoch here
    kwargs: dict[str, Any] = dict(val_check_interval=0.5, limit_val_batches=1, num_sanity_val_steps=0)
    sparse = _checkpoint_scores(tmp_path / "sparse", make(), monitor, **kwargs)
    dense = _checkpoint_scores(tmp_path / "dense", make(), monitor, log_every_n_steps=1, **kwargs)
    assert sorted(sparse) == [f"epoch=0-step={s}.ckpt" for s in steps]
    assert sparse == pytest.approx(dense, rel=1e-6)


def test_time_checkpoints_on_a_train_metric_save_the_value_of_their_step(tmp_path: Path) -> None:
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="train/loss", train_time_interval=timedelta(0), save_top_k=-1)
    run = trainer(tmp_path, limit_train_batches=6, limit_val_batches=0, callbacks=[ckpt], enable_checkpointing=True)
    run.fit(tiny_vae(), digits(value_range=(0.0, 1.0)))
    dense = _checkpoint_scores(
        tmp_path / "dense", tiny_vae(), "train/loss", every_n_train_steps=1, limit_train_batches=6
    )
    scores = {Path(p).name: float(v) for p, v in ckpt.best_k_models.items()}
    assert sorted(scores) == [f"epoch=0-step={s}.ckpt" for s in range(1, 7)]  # a zero interval is due after every batch
    assert scores == pytest.approx(dense, rel=1e-6)


def test_logging_stays_sparse_apart_from_the_monitored_steps(tmp_path: Path) -> None:
    model = tiny_vae()
    logged: list[int] = []
    log = model.log

    def recording_log(name: str, *args: Any, **kwargs: Any) -> None:
        if name == "train/loss":
            logged.append(model.trainer.global_step + 1)  # the step the value belongs to (after the optimizer step)
        log(name, *args, **kwargs)

    model.log = recording_log  # type: ignore[method-assign]
    _checkpoint_scores(tmp_path, model, "train/loss", every_n_train_steps=7, log_every_n_steps=50)
    assert logged == [7, 14, 20]  # the checkpoints' steps and the epoch's last batch, nothing else
