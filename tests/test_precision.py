"""Mixed precision and gradient clipping in manual optimization (CPU; the 16-mixed GPU path is in test_gpu.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from lit_gen.losses.penalties import gradient_penalty, r1_penalty
from tests.helpers import digits, tiny_gan, tiny_vae, trainer

SGD = functools.partial(torch.optim.SGD, lr=1.0)


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_penalties_are_unscaled_again() -> None:
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(5, 2, requires_grad=True)
    assert r1_penalty(x @ w, x, scale=65536.0).item() == pytest.approx(25.0)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    gp = [gradient_penalty(lambda v: v @ w, real, fake, torch.Generator().manual_seed(0), s) for s in (1.0, 1024.0)]
    assert gp[0].item() == pytest.approx(gp[1].item()) == pytest.approx(16.0, rel=1e-5)


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clipping_bounds_each_update(clip: float | None, tmp_path: Path) -> None:
    module = tiny_gan(generator_optimizer=SGD, discriminator_optimizer=SGD, generator_clip_norm=clip,
                      discriminator_clip_norm=clip)  # fmt: skip
    g0, d0 = flat(module.generator), flat(module.discriminator)
    trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(module, datamodule=digits())
    moved = [(flat(module.generator) - g0).norm().item(), (flat(module.discriminator) - d0).norm().item()]
    if clip is None:
        assert min(moved) > 1e-2  # one SGD(lr=1) step moves each player by its gradient norm
    else:
        assert max(moved) <= clip * (1 + 1e-4)


@pytest.mark.parametrize("make", [tiny_gan, tiny_vae])
def test_one_bf16_mixed_step_matches_32_bit(make, tmp_path: Path) -> None:
    """bf16 keeps 8 bits of mantissa: one SGD step's update agrees with float32 to within 2% (relative L2)."""
    updates = []
    for precision in ("32-true", "bf16-mixed"):
        kwargs = (
            {"generator_optimizer": SGD, "discriminator_optimizer": SGD} if make is tiny_gan else {"optimizer": SGD}
        )
        module = make(**kwargs)
        start = flat(module)
        torch.manual_seed(1)
        t = trainer(tmp_path, precision=precision, limit_train_batches=1, limit_val_batches=0)
        t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
        updates.append(flat(module) - start)
    rel = ((updates[1] - updates[0]).norm() / updates[0].norm()).item()
    assert 0 < rel < 0.02, rel
