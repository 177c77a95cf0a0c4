"""The VAE objective options: β schedules, controlled capacity, free bits, the IWAE objective, the likelihoods."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_gen import VAEModule
from lit_gen.losses.schedules import beta_at, capacity_at, cyclical, linear_warmup
from lit_gen.losses.vae import (
    discretized_logistic_nll,
    free_bits_kl,
    gaussian_kl_per_dim,
    gaussian_nll,
    importance_weighted_bound,
)
from lit_gen.nets import MLPDecoder, MLPEncoder
from tests.helpers import digits, tiny_vae, trainer


def test_linear_warmup_values() -> None:
    assert [linear_warmup(t, 100) for t in (0, 25, 50, 100, 250)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert [beta_at(t, 4.0, "linear", warmup_steps=10) for t in (0, 5, 10, 11)] == [0.0, 2.0, 4.0, 4.0]


def test_cyclical_schedule_rises_over_half_of_each_cycle_then_holds() -> None:
    # Fu et al. 2019: cycles of 8 steps, rising over the first 4
    values = [cyclical(t, 8, 0.5) for t in range(17)]
    assert values == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert beta_at(10, 2.0, "cyclical", cycle_steps=8, cycle_ratio=0.5) == 1.0


def test_capacity_grows_linearly_to_its_maximum() -> None:
    assert [capacity_at(t, 25.0, 1000) for t in (0, 200, 1000, 5000)] == [0.0, 5.0, 25.0, 25.0]


def test_capacity_loss_is_gamma_times_the_distance_of_kl_from_c() -> None:
    module = tiny_vae(beta=100.0, capacity=10.0, capacity_steps=100)
    x = torch.rand(6, 1, 8, 8)
    rng = torch.Generator().manual_seed(0)
    plain = tiny_vae().loss_terms(x, rng=torch.Generator().manual_seed(0))
    terms = module.loss_terms(x, rng=rng, step=50)  # C = 5 nats
    expected = plain["recon"] + 100.0 * (plain["kl"] - 5.0).abs()
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_free_bits_clamp_each_dimensions_batch_mean_kl() -> None:
    mu = torch.tensor([[0.0, 2.0, 0.1], [0.0, 2.0, -0.1]])
    logvar = torch.zeros(2, 3)
    kl_dims = gaussian_kl_per_dim(mu, logvar)  # batch means 0, 2, 0.005 nats
    assert kl_dims.mean(0).tolist() == pytest.approx([0.0, 2.0, 0.005])
    assert free_bits_kl(kl_dims, 0.5).item() == pytest.approx(0.5 + 2.0 + 0.5)
    assert free_bits_kl(kl_dims, 0.0).item() == pytest.approx(kl_dims.sum(1).mean().item())


def test_free_bits_give_no_gradient_to_dimensions_under_the_floor() -> None:
    mu = torch.tensor([[0.1, 3.0]], requires_grad=True)
    free_bits_kl(gaussian_kl_per_dim(mu, torch.zeros(1, 2)), 1.0).backward()
    assert mu.grad is not None and mu.grad[0, 0] == 0 and mu.grad[0, 1] == pytest.approx(3.0)


def test_module_logs_the_true_kl_but_trains_on_the_free_bits_term() -> None:
    x = torch.rand(5, 1, 8, 8)
    a = tiny_vae().loss_terms(x, rng=torch.Generator().manual_seed(1))
    b = tiny_vae(free_bits=2.0).loss_terms(x, rng=torch.Generator().manual_seed(1))
    assert b["kl"].item() == pytest.approx(a["kl"].item())
    assert b["loss"].item() == pytest.approx(a["recon"].item() + 2 * 2.0, rel=1e-5)  # both latent dims under 2 nats
    assert a["kl"].item() < 2.0


def test_iwae_objective_is_the_bound_of_the_modules_own_samples() -> None:
    module = tiny_vae(iwae_samples=5)
    x = torch.rand(4, 1, 8, 8)
    terms = module.loss_terms(x, rng=torch.Generator().manual_seed(3))
    mu, logvar = module.encode(x)
    z, log_px_z = module._importance_terms(x, None, mu, logvar, 5, torch.Generator().manual_seed(3))
    assert log_px_z.shape == (5, 4) and z.shape == (5, 4, 2)
    bound = importance_weighted_bound(log_px_z, z, mu, logvar).mean()
    assert terms["iwae"].item() == pytest.approx(bound.item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(-bound.item(), rel=1e-6)


def test_iwae_bound_equals_the_elbo_at_k_1_and_rises_with_k() -> None:
    """Averaged over 400 draws (fixed seed): k = 1 estimates the ELBO; k = 5 and 50 are higher, in order."""
    module, x = tiny_vae(), torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        mu, logvar = module.encode(x)
        rng = torch.Generator().manual_seed(7)
        # the ELBO with the reconstruction term averaged over 400 draws and the KL in closed form
        elbo = torch.stack([module.loss_terms(x, rng=rng)["elbo"] for _ in range(400)]).mean().item()

        def mean_bound(k: int) -> float:
            draws = [importance_weighted_bound(*reorder(module._importance_terms(x, None, mu, logvar, k, rng)))
                     for _ in range(400)]  # fmt: skip
            return torch.stack(draws).mean().item()

        def reorder(zl: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
            return zl[1], zl[0], mu, logvar

        k1, k5, k50 = mean_bound(1), mean_bound(5), mean_bound(50)
    assert k1 == pytest.approx(elbo, abs=0.3)
    assert elbo < k5 < k50


def test_iwae_loss_is_the_negative_bound_and_trains(tmp_path) -> None:
    module = tiny_vae(iwae_samples=5)
    terms = module.loss_terms(torch.rand(3, 1, 8, 8))
    assert terms["loss"].item() == pytest.approx(-terms["iwae"].item())
    dm = digits(value_range=(0.0, 1.0), batch_size=64)
    untrained = trainer(tmp_path, limit_val_batches=None).validate(module, datamodule=dm, verbose=False)[0]
    t = trainer(tmp_path, max_epochs=2, limit_train_batches=None, limit_val_batches=None)
    t.fit(module, datamodule=dm)
    assert t.callback_metrics["val/iwae"].item() > t.callback_metrics["val/elbo"].item()
    assert t.callback_metrics["val/iwae"].item() > untrained["val/iwae"] + 3.0  # -45.1 -> -40.9 nats when written


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iwae_samples": 5, "beta": 2.0}, "IWAE bound, which has no KL weight"),
        ({"iwae_samples": 5, "free_bits": 1.0}, "IWAE bound"),
        ({"iwae_samples": 0}, "iwae_samples must be >= 1"),
        ({"beta_schedule": "linear"}, "beta_warmup_steps >= 1"),
        ({"beta_schedule": "cyclical"}, "beta_cycle_steps >= 1"),
        ({"beta_schedule": "cosine"}, "unknown beta_schedule"),
        ({"free_bits": -1.0}, "free_bits must be >= 0"),
        ({"capacity": -1.0}, "capacity must be >= 0"),
        ({"gaussian_std": 0.0, "likelihood": "gaussian"}, "gaussian_std must be > 0"),
        ({"predict_outputs": ["pears"]}, "predict_outputs must be"),
    ],
)
def test_bad_objective_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_vae(**kwargs)


def test_schedule_is_logged_and_counted_in_training_batches(tmp_path) -> None:
    module = tiny_vae(beta=2.0, beta_schedule="linear", beta_warmup_steps=4)
    t = trainer(tmp_path, max_steps=3)
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert module._step == 3
    assert t.callback_metrics["train/beta"].item() == pytest.approx(2.0 * 2 / 4)  # the last batch was step 2


def test_schedule_resumes_from_a_checkpoint_exactly(tmp_path) -> None:
    """Resumed from its step-5 checkpoint, a run ends with the same weights and schedule clock as a straight run."""
    kwargs = dict(beta=2.0, beta_schedule="cyclical", beta_cycle_steps=6, capacity=5.0, capacity_steps=8)
    every_5 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1)
    straight = tiny_vae(**kwargs)
    run = dict(max_steps=10, max_epochs=None, limit_train_batches=None, enable_checkpointing=True)
    trainer(tmp_path, callbacks=[every_5], **run).fit(straight, datamodule=digits((0.0, 1.0)))
    (mid,) = (tmp_path / "ckpt").glob("*step=5.ckpt")
    assert torch.load(mid, weights_only=True)["lit_gen_vae_step"] == 5

    resumed = tiny_vae(**kwargs)
    trainer(tmp_path, **run).fit(resumed, datamodule=digits((0.0, 1.0)), ckpt_path=mid)
    assert resumed._step == straight._step == 10
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_discretized_logistic_probabilities_sum_to_one_over_256_levels() -> None:
    levels = torch.arange(256, dtype=torch.float32) / 255  # the pixel values of [0, 1] 8-bit images
    for loc, log_scale in ((0.5, -3.0), (0.0, -5.0), (1.0, -1.0), (0.3, -8.0), (0.7, 1.0)):
        x = levels.view(256, 1, 1, 1)
        nll = discretized_logistic_nll(torch.full_like(x, loc), torch.full_like(x, log_scale), x, (0.0, 1.0))
        assert nll.neg().exp().sum().item() == pytest.approx(1.0, abs=1e-4), (loc, log_scale)


def test_discretized_logistic_middle_bin_is_the_cdf_difference() -> None:
    x, loc, s = torch.tensor(100 / 255), 0.4, 0.05
    half = 0.5 / 255
    cdf = lambda v: 1 / (1 + math.exp(-(v - loc) / s))  # noqa: E731
    expected = -math.log(cdf(x.item() + half) - cdf(x.item() - half))
    nll = discretized_logistic_nll(torch.tensor(loc).view(1, 1, 1, 1), torch.tensor(math.log(s)).view(1, 1, 1, 1),
                                   x.view(1, 1, 1, 1), (0.0, 1.0))  # fmt: skip
    assert nll.item() == pytest.approx(expected, rel=1e-5)


def test_discretized_logistic_works_in_minus_one_one() -> None:
    levels = torch.linspace(-1, 1, 256).view(256, 1, 1, 1)
    nll = discretized_logistic_nll(torch.zeros_like(levels), torch.full_like(levels, -2.0), levels, (-1.0, 1.0))
    assert nll.neg().exp().sum().item() == pytest.approx(1.0, abs=1e-4)


def test_gaussian_nll_with_a_tensor_std_equals_the_float_one() -> None:
    mean, x = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    assert torch.allclose(gaussian_nll(mean, x, 0.3), gaussian_nll(mean, x, torch.tensor(0.3)))
    expected = 0.5 * ((x - mean) / 0.3).square().sum((1, 2, 3)) + 16 * (math.log(0.3) + 0.5 * math.log(2 * math.pi))
    assert torch.allclose(gaussian_nll(mean, x, 0.3), expected)


def test_learned_gaussian_std_is_a_trained_parameter(tmp_path) -> None:
    module = tiny_vae(likelihood="gaussian", gaussian_std=None, optimizer=functools.partial(torch.optim.Adam, lr=0.03))
    assert module.log_std is not None and module.log_std.item() == 0.0
    t = trainer(tmp_path, max_epochs=3, limit_train_batches=None)
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0), batch_size=64))
    assert module.log_std.item() < -0.5  # σ falls from 1 towards the reconstruction error (~0.2 on [0, 1] digits)
    assert t.callback_metrics["train/gaussian_std"].item() == pytest.approx(math.exp(module.log_std.item()), rel=0.2)


def test_discretized_logistic_vae_trains_and_reports_bits_per_dim(tmp_path) -> None:
    torch.manual_seed(0)
    module = VAEModule(
        encoder=MLPEncoder((1, 8, 8), latent_dim=4, hidden=(64,)),
        decoder=MLPDecoder(latent_dim=4, image_shape=(1, 8, 8), hidden=(64,), out_channels=2),
        likelihood="discretized_logistic",
        importance_samples=8,
    )
    t = trainer(tmp_path, max_epochs=4, limit_train_batches=None, limit_test_batches=None)
    dm = digits(value_range=(0.0, 1.0), batch_size=64)
    t.fit(module, datamodule=dm)
    (result,) = t.test(module, datamodule=dm, verbose=False)
    # 8 bits/dim is a uniform distribution over the 256 levels (4.09 over the digits' 17 levels); 4 epochs of a tiny
    # MLP gave 4.19 when this test was written
    assert 0.5 < result["test/bpd"] < 5.0
    assert result["test/bpd"] == pytest.approx(result["test/nll"] / (64 * math.log(2)), rel=1e-4)


def test_discretized_logistic_needs_two_decoder_channels_per_image_channel(tmp_path) -> None:
    module = tiny_vae(likelihood="discretized_logistic")
    with pytest.raises(ValueError, match="needs 2×1 decoder output channels .* out_channels: 2"):
        trainer(tmp_path).fit(module, datamodule=digits(value_range=(0.0, 1.0)))
