"""CUDA paths: run with `pytest -m gpu` on a machine with a GPU (skipped by default and without one)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tests.helpers import digits, tiny_gan, tiny_vae, trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


class Penalties(L.Callback):
    """The GAN's last penalty after each batch."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if getattr(pl_module, "last_penalty", None) is not None:
            self.values.append(pl_module.last_penalty.item())


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32-true"])
@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        (tiny_gan, {"r1_gamma": 1.0}),
        (tiny_gan, {"gradient_penalty": 10.0, "loss": "wasserstein"}),
        (tiny_gan, {"r1_gamma": 1.0, "ema_decay": 0.9, "generator_clip_norm": 1.0, "accumulate_grad_batches": 2}),
        (tiny_vae, {}),
    ],
    ids=["gan-r1", "gan-gp", "gan-r1-ema-clip-accumulate", "vae"],
)
def test_mixed_precision_on_gpu(make, kwargs: dict, precision: str, tmp_path: Path) -> None:
    """16-mixed runs CUDA's GradScaler (starting at 2^16, inf in fp16): the penalties must stay finite under it."""
    module, penalties = make(**kwargs), Penalties()
    before = [p.detach().cpu().clone() for p in module.parameters()]
    t = trainer(
        tmp_path, accelerator="gpu", devices=1, precision=precision, limit_train_batches=6, callbacks=[penalties]
    )
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))  # nonfinite="stop": a NaN loss raises
    assert all(torch.isfinite(v) for k, v in t.callback_metrics.items() if k.startswith("train/"))
    after = [p.detach().cpu() for p in module.parameters()]
    assert all(bool(torch.isfinite(a).all()) for a in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    if make is tiny_gan:
        assert int(module.skipped_steps) == 0
        assert penalties.values and all(0 < p < 1e3 for p in penalties.values), penalties.values
