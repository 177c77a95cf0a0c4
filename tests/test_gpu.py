"""CUDA paths: run with `pytest -m gpu` on a machine with a GPU (skipped by default and without one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import digits, tiny_gan, tiny_vae, trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32-true"])
@pytest.mark.parametrize("make", [tiny_gan, tiny_vae])
def test_mixed_precision_on_gpu(make, precision: str, tmp_path: Path) -> None:
    module = make(**({"r1_gamma": 1.0} if make is tiny_gan else {}))
    before = [p.detach().cpu().clone() for p in module.parameters()]
    t = trainer(tmp_path, accelerator="gpu", devices=1, precision=precision, limit_train_batches=5)
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert all(torch.isfinite(v) for k, v in t.callback_metrics.items() if k.startswith("train/"))
    after = [p.detach().cpu() for p in module.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
