"""GANModule(evaluate_every_n_epochs=n): the test-time sample metrics on the validation split during fit (val/fd,
the GAN sweep's metric), on a schedule, never in the sanity check."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_gen import ImageQuality
from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.modules.common import eval_rng
from tests.helpers import digits, tiny_gan, tiny_vae, trainer


class RecordValidation(L.Callback):
    """The callback metrics after every validation epoch: (sanity check?, epoch, {name: value})."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, int, dict[str, float]]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.seen.append((trainer.sanity_checking, trainer.current_epoch, metrics))


def test_sample_metrics_on_the_validation_split_every_n_epochs_and_at_the_end(tmp_path: Path) -> None:
    module = tiny_gan(evaluation=ImageQuality(kid_subset_size=50), evaluate_every_n_epochs=2)
    record = RecordValidation()
    t = trainer(tmp_path, max_epochs=3, limit_train_batches=2, limit_val_batches=4, callbacks=[record])
    t.fit(module, datamodule=digits())
    with_fd = [(sanity, epoch) for sanity, epoch, metrics in record.seen if "val/fd" in metrics]
    assert [(s, e) for s, e, _ in record.seen] == [(True, 0), (False, 0), (False, 1), (False, 2)]
    assert with_fd == [(False, 1), (False, 2)]  # epoch 2 of 3 (every 2nd), epoch 3 (the last); not the sanity check
    assert {"val/kid", "val/precision", "val/classes"} <= set(record.seen[-1][2])
    # the same weights and noise under `trainer.validate` give the same value (4 batches of 16 against as many fakes)
    again = t.validate(module, datamodule=digits(), verbose=False)[0]
    assert again["val/fd"] == pytest.approx(record.seen[-1][2]["val/fd"], rel=1e-5)
    assert again["val/fd"] > 0


def test_sample_metrics_stay_at_test_time_by_default(tmp_path: Path) -> None:
    module = tiny_gan(evaluation=ImageQuality(kid_subset_size=50))
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2, limit_test_batches=2)
    t.fit(module, datamodule=digits())
    assert "val/fd" not in t.callback_metrics and "val/d_loss" in t.callback_metrics
    assert "test/fd" in t.test(module, datamodule=digits(), verbose=False)[0]


class Recording(SampleEvaluation):
    """Keeps the generated batches it is fed; ``compute`` returns their count."""

    def __init__(self) -> None:
        super().__init__()
        self.fakes: list[torch.Tensor] = []

    def update(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.fakes.append(fake.detach().clone())

    def compute(self) -> dict[str, torch.Tensor]:
        return {"count": torch.tensor(float(sum(len(f) for f in self.fakes)))}

    def reset(self) -> None:
        self.fakes = []


def test_validation_samples_come_from_the_ema_generator(tmp_path: Path) -> None:
    """With an EMA, the validation metrics score the generator users sample from, as the test metrics do."""
    recording = Recording()
    sgd = functools.partial(torch.optim.SGD, lr=0.5)  # the EMA (decay 0.5) visibly lags the trained generator
    module = tiny_gan(evaluation=recording, evaluate_every_n_epochs=1, ema_decay=0.5, generator_optimizer=sgd)
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=2)
    t.fit(module, datamodule=digits())
    assert float(t.callback_metrics["val/count"]) == 32  # 2 validation batches of 16
    z = module.noise(16, eval_rng(module, 0))  # the noise of validation batch 0
    module.eval()
    assert torch.allclose(recording.fakes[0], module.generator_ema.module(z))
    assert not torch.allclose(recording.fakes[0], module.generator(z), atol=1e-3)


def test_negative_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="evaluate_every_n_epochs must be >= 0"):
        tiny_gan(evaluate_every_n_epochs=-1)


def test_vae_sample_metrics_on_the_validation_split(tmp_path: Path) -> None:
    module = tiny_vae(evaluation=ImageQuality(kid_subset_size=50), evaluate_every_n_epochs=1)
    record = RecordValidation()
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=4, callbacks=[record])
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert "val/fd" not in record.seen[0][2] and record.seen[-1][2]["val/fd"] > 0  # not in the sanity check
