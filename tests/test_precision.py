"""Mixed precision and gradient clipping in manual optimization, on CPU.

Lightning's ``MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))`` runs the GradScaler path of
CUDA's 16-mixed (scale, unscale, skipped steps, back-off) on CPU; test_gpu.py runs the same on a GPU.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lit_gen.losses.penalties import gradient_penalty, r1_penalty
from lit_gen.modules.guards import NonFiniteLossError
from tests.helpers import digits, tiny_gan, tiny_vae, trainer
from tests.test_compression import tiny_vqvae

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


# -- 16-mixed with a GradScaler, on CPU: the very code path CUDA users run ---------------------------------------------
def fp16_scaler(**kwargs: float) -> MixedPrecision:
    """Lightning's 16-mixed plugin with a CPU GradScaler (default init_scale 2^16, like CUDA's)."""
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", **kwargs))


class ScaleAndPenalty(L.Callback):
    """Records the GradScaler's scale used by each optimizer step and the GAN's last penalty after each batch."""

    def __init__(self) -> None:
        self.scales: list[float] = []
        self.penalties: list[float] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: object) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.scales.append(scaler.get_scale() if scaler is not None else 1.0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        penalty = getattr(pl_module, "last_penalty", None)
        if penalty is not None:
            self.penalties.append(penalty.item())


def all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"r1_gamma": 1.0},
        {"gradient_penalty": 10.0, "loss": "wasserstein", "n_critic": 2},
        {"r1_gamma": 1.0, "d_reg_interval": 2, "generator_clip_norm": 0.1, "discriminator_clip_norm": 1.0},
        {"gradient_penalty": 10.0, "accumulate_grad_batches": 2},
        {"r1_gamma": 1.0, "ema_decay": 0.9},
    ],
    ids=["r1", "gp", "lazy-r1-clip", "gp-accumulate", "r1-ema"],
)
def test_gan_penalties_train_under_16_mixed_with_a_grad_scaler(kwargs: dict, tmp_path: Path) -> None:
    """The GradScaler starts at 2^16 = inf in fp16: the penalties' inner gradient must not carry that scale."""
    module, record = tiny_gan(**kwargs), ScaleAndPenalty()
    before = flat(module)
    t = trainer(tmp_path, plugins=[fp16_scaler()], limit_train_batches=4, limit_val_batches=0, callbacks=[record])
    t.fit(module, datamodule=digits())  # nonfinite="stop": a NaN penalty would raise
    accumulate, n_critic = kwargs.get("accumulate_grad_batches", 1), kwargs.get("n_critic", 1)
    assert int(module.generator_steps) == 4 // accumulate
    assert len(record.scales) == (n_critic + 1) * (4 // accumulate)
    assert record.penalties and all(0 < p < 1e3 for p in record.penalties), record.penalties
    assert int(module.skipped_steps) == 0 and all_finite(module)
    assert not torch.equal(flat(module), before)
    if "ema_decay" in kwargs:
        assert int(module.generator_ema.n_averaged) == 4 and all_finite(module.generator_ema)


def test_the_penalty_is_the_same_in_fp16_and_fp32(tmp_path: Path) -> None:
    """One R1 step under 16-mixed + GradScaler computes the penalty of 32-bit to fp16 accuracy."""
    penalties = []
    for plugins in ([], [fp16_scaler()]):
        module, record = tiny_gan(r1_gamma=1.0), ScaleAndPenalty()
        t = trainer(tmp_path, plugins=plugins, limit_train_batches=1, limit_val_batches=0, callbacks=[record])
        t.fit(module, datamodule=digits())
        penalties.append(record.penalties[0])
    assert penalties[1] == pytest.approx(penalties[0], rel=2e-2)


def test_scale_backs_off_and_grows_back_to_2_16_with_finite_penalties(tmp_path: Path) -> None:
    """growth_interval=2 doubles the scale after every two finite steps: it climbs to 2^16 (where the penalties used
    to turn NaN at once), where this net's gradients overflow; the scaler skips that step, backs off and grows back
    to 2^16 again, mid-run, while both penalties stay finite."""
    module, record = tiny_gan(r1_gamma=1.0, gradient_penalty=1.0), ScaleAndPenalty()
    plugin = fp16_scaler(init_scale=2.0**13, growth_interval=2)
    t = trainer(tmp_path, plugins=[plugin], limit_train_batches=10, limit_val_batches=0, callbacks=[record])
    t.fit(module, datamodule=digits())
    s = record.scales
    assert s[:6] == [2.0**13, 2.0**13, 2.0**14, 2.0**14, 2.0**15, 2.0**15], s
    backoffs = [i for i in range(1, len(s)) if s[i] < s[i - 1]]
    assert len(backoffs) >= 2 and all(s[i - 1] == 2.0**16 for i in backoffs), s  # backed off from 2^16 ...
    assert 2.0**16 in s[backoffs[0] :], s  # ... and grew back to it
    assert len(record.penalties) == 10 and all(0 < p < 1e3 for p in record.penalties), record.penalties
    assert int(module.generator_steps) == 10 and int(module.skipped_steps) == 0 and all_finite(module)


class Blowup(torch.nn.Module):
    """A discriminator whose logits overflow fp16 (|logit| > 65504) but not float32."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 1e6


def test_a_nonfinite_loss_under_fp16_names_the_precision(tmp_path: Path) -> None:
    module = tiny_gan()
    module.discriminator = Blowup(module.discriminator)
    t = trainer(tmp_path, plugins=[fp16_scaler()], limit_train_batches=1, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"float16 \(precision='16-mixed'\).*precision='bf16-mixed'") as err:
        t.fit(module, datamodule=digits())
    assert "Lower the learning rates" not in str(err.value)


@pytest.mark.parametrize("make", [tiny_vae, tiny_vqvae])
def test_autoencoders_train_under_16_mixed_with_a_grad_scaler(make, tmp_path: Path) -> None:
    """Their losses are nats per image, so the first steps' gradients overflow fp16 at the scale 2^16: the scaler skips
    them and backs off (the VQ-VAE's to 2^9 here), then trains with finite weights."""
    module, record = make(), ScaleAndPenalty()
    before = flat(module)
    t = trainer(tmp_path, plugins=[fp16_scaler()], limit_train_batches=12, limit_val_batches=1, callbacks=[record])
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert torch.isfinite(t.callback_metrics["val/loss"]) and all_finite(module)
    assert not torch.equal(flat(module), before) and len(record.scales) == 12
    assert record.scales[0] == 2.0**16 and record.scales[-1] >= 2.0**8, record.scales
