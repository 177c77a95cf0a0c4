"""The generator EMA: the closed-form average, its warm-up, its place in checkpoints, sampling, evaluation, export."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import Tensor

from lit_gen import GANModule
from lit_gen.export import generator_of
from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.modules.ema import ema_decay_at
from lit_gen.nets import DCGANGenerator, MLPDiscriminator
from tests.helpers import digits, trainer


def ema_gan(decay: float = 0.8, warmup: int = 0, **kwargs) -> GANModule:
    L.seed_everything(0, verbose=False)
    return GANModule(
        generator=DCGANGenerator(latent_dim=4, image_shape=(1, 8, 8), width=4),  # batch norm: buffers averaged too
        discriminator=MLPDiscriminator((1, 8, 8), (16,)),
        ema_decay=decay,
        ema_warmup=warmup,
        **kwargs,
    )


class RecordGenerator(L.Callback):
    """The generator's float parameters and buffers after every training batch."""

    def __init__(self) -> None:
        self.history: list[list[Tensor]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        g = pl_module.generator
        self.history.append([t.detach().clone() for t in [*g.parameters(), *g.buffers()] if t.is_floating_point()])


def float_state(module: torch.nn.Module) -> list[Tensor]:
    return [t.detach() for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()]


@pytest.mark.parametrize("warmup", [0, 10])
def test_ema_after_n_steps_equals_the_closed_form_average(warmup: int, tmp_path: Path) -> None:
    decay, steps = 0.8, 5
    module, record = ema_gan(decay, warmup), RecordGenerator()
    trainer(tmp_path, limit_train_batches=steps, limit_val_batches=0, callbacks=[record]).fit(module, digits())
    # update 1 copies G; update t >= 2 uses d_t = ema_decay_at(t - 1): ema_N = Σ_k w_k θ_k with
    # w_1 = Π_{t=2..N} d_t and w_k = (1 - d_k) Π_{t=k+1..N} d_t
    d = {t: ema_decay_at(t - 1, decay, warmup) for t in range(2, steps + 1)}
    weights = []
    for k in range(1, steps + 1):
        w = 1.0 if k == 1 else 1.0 - d[k]
        for t in range(k + 1, steps + 1):
            w *= d[t]
        weights.append(w)
    assert sum(weights) == pytest.approx(1.0)
    history = record.history
    expected = [sum(w * h[i] for w, h in zip(weights, history, strict=True)) for i in range(len(history[0]))]
    ema = float_state(module.generator_ema.module)
    for got, want in zip(ema, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert module.generator_ema.n_averaged.item() == steps
    assert not torch.equal(ema[0], record.history[-1][0])  # an average, not a copy


def test_ema_warmup_decay_ramps_up_to_the_decay() -> None:
    assert ema_decay_at(1, 0.999, 10) == pytest.approx(2 / 11)
    assert ema_decay_at(90, 0.999, 10) == pytest.approx(91 / 100)
    assert ema_decay_at(10**6, 0.999, 10) == 0.999
    assert ema_decay_at(1, 0.999, 0) == 0.999
    assert ema_decay_at(torch.tensor(90), 0.999, 10).item() == pytest.approx(0.91)


def test_ema_is_not_trained_and_only_g_is_averaged(tmp_path: Path) -> None:
    module = ema_gan()
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=0).fit(module, digits())
    assert all(not p.requires_grad for p in module.generator_ema.parameters())
    optimized = {id(p) for opt in module.trainer.optimizers for g in opt.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in module.generator_ema.parameters()}
    assert sum(p.numel() for p in module.generator_ema.module.parameters()) == sum(
        p.numel() for p in module.generator.parameters()
    )


def test_ema_is_saved_and_restored_by_checkpoints(tmp_path: Path) -> None:
    module = ema_gan()
    t = trainer(tmp_path, limit_train_batches=3, limit_val_batches=0)
    t.fit(module, digits())
    t.save_checkpoint(tmp_path / "ema.ckpt")
    restored = GANModule.load_from_checkpoint(
        tmp_path / "ema.ckpt",
        generator=DCGANGenerator(latent_dim=4, image_shape=(1, 8, 8), width=4),
        discriminator=MLPDiscriminator((1, 8, 8), (16,)),
        weights_only=True,
    )
    assert restored.generator_ema.n_averaged.item() == 3
    for a, b in zip(float_state(module.generator_ema), float_state(restored.generator_ema), strict=True):
        assert torch.equal(a, b)


def trained_with_distinct_ema(tmp_path: Path, **kwargs) -> GANModule:
    module = ema_gan(**kwargs)
    trainer(tmp_path, limit_train_batches=3, limit_val_batches=0).fit(module, digits())
    with torch.no_grad():  # make G and its average clearly different
        for p in module.generator.parameters():
            p.add_(0.5)
    return module.eval()


def test_sample_and_predict_use_the_ema_generator(tmp_path: Path) -> None:
    module = trained_with_distinct_ema(tmp_path)
    z = module.noise(6, torch.Generator().manual_seed(3))
    with torch.no_grad():
        from_ema, from_g = module.generator_ema(z), module.generator(z)
    samples = module.sample(6, torch.Generator().manual_seed(3))
    assert torch.equal(samples, from_ema) and not torch.allclose(samples, from_g)
    predicted = module.predict_step((torch.zeros(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)), 0)["samples"]
    assert predicted.shape == (6, 1, 8, 8)
    with torch.no_grad():  # batch 0's prediction noise (see eval_rng) through the average
        assert torch.equal(predicted, module.generator_ema(module.noise(6, torch.Generator().manual_seed(0))))
    assert generator_of(module) is module.generator_ema.module  # export takes the average


class Recorder(SampleEvaluation):
    def __init__(self) -> None:
        super().__init__()
        self.fakes: list[Tensor] = []

    def update(self, real: Tensor, fake: Tensor, labels: Tensor | None = None) -> None:
        self.fakes.append(fake.clone())

    def compute(self) -> dict[str, Tensor]:
        return {"count": torch.tensor(float(sum(len(f) for f in self.fakes)))}


def test_test_metrics_score_the_ema_generator(tmp_path: Path) -> None:
    recorder = Recorder()
    module = trained_with_distinct_ema(tmp_path)
    module.set_evaluation(recorder)
    trainer(tmp_path, limit_test_batches=1).test(module, digits())
    (fake,) = recorder.fakes
    rng = torch.Generator().manual_seed(0)  # batch 0's evaluation noise (see eval_rng)
    z = module.noise(fake.shape[0], rng)
    with torch.no_grad():
        assert torch.equal(fake, module.generator_ema(z))
        assert not torch.allclose(fake, module.generator.eval()(z))


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_bad_ema_decay_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        ema_gan(decay)
