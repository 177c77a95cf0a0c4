"""``Trainer(precision="bf16-true" | "64-true")`` converts the module's weights; the DataModules' uint8 batches must
then arrive in that dtype too (their float conversion runs after Lightning's input conversion). The mixed precisions
keep float32 inputs (autocast casts inside the ops)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.helpers import digits, tiny_gan, tiny_vae, trainer
from tests.test_resume_epoch_end import tiny_vqvae

MODULES: dict[str, tuple[Callable[[], L.LightningModule], tuple[float, float]]] = {
    "gan": (tiny_gan, (-1.0, 1.0)),
    "vae": (tiny_vae, (0.0, 1.0)),
    "vqvae": (tiny_vqvae, (0.0, 1.0)),
}


class InputDtypes(L.Callback):
    """The dtype of the images of every training and validation batch, as the module's steps receive them."""

    def __init__(self) -> None:
        self.seen: set[torch.dtype] = set()

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: tuple, *args: int) -> None:
        self.seen.add(batch[0].dtype)

    def on_validation_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: tuple, *a: int) -> None:
        self.seen.add(batch[0].dtype)


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-true", torch.bfloat16), ("64-true", torch.float64)])
@pytest.mark.parametrize("name", list(MODULES))
def test_true_precisions_train_with_inputs_in_the_weights_dtype(
    name: str, precision: str, dtype: torch.dtype, tmp_path: Path
) -> None:
    build, value_range = MODULES[name]
    module, inputs = build(), InputDtypes()
    before = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}
    fit = trainer(tmp_path, precision=precision, max_steps=6, limit_val_batches=1, callbacks=[inputs])
    fit.fit(module, datamodule=digits(value_range))
    assert inputs.seen == {dtype}
    assert {p.dtype for p in module.parameters()} == {dtype}
    losses = {k: v for k, v in fit.callback_metrics.items() if "loss" in k}
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    after = module.state_dict()
    assert any(not torch.equal(before[k].to(dtype), after[k]) for k in before)  # it trained


def test_mixed_precision_keeps_float32_inputs(tmp_path: Path) -> None:
    module, inputs = tiny_vae(), InputDtypes()
    trainer(tmp_path, precision="bf16-mixed", max_steps=2, callbacks=[inputs]).fit(module, datamodule=digits((0, 1)))
    assert inputs.seen == {torch.float32}
    assert {p.dtype for p in module.parameters()} == {torch.float32}
