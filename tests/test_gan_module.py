from __future__ import annotations

import functools

import lightning as L
import pytest
import torch

from lit_gen import GANModule
from lit_gen.nets import MLPDiscriminator, MLPGenerator
from tests.helpers import digits, tiny_gan, trainer


class StepRecorder(L.Callback):
    """Records which player each optimizer step moved, and checks that the other player's weights stood still."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_train_start(self, trainer: L.Trainer, module: GANModule) -> None:
        g_opt, d_opt = (o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers)
        for name, opt in (("G", g_opt), ("D", d_opt)):
            opt.register_step_pre_hook(functools.partial(self.before, module))
            opt.register_step_post_hook(functools.partial(self.after, module, name))

    def before(self, module: GANModule, *_: object) -> None:
        self.snapshot = {k: v.detach().clone() for k, v in module.named_parameters()}

    def after(self, module: GANModule, name: str, *_: object) -> None:
        own, other = ("generator.", "discriminator.") if name == "G" else ("discriminator.", "generator.")
        params = dict(module.named_parameters())
        assert all(torch.equal(params[k], v) for k, v in self.snapshot.items() if k.startswith(other))
        assert any(not torch.equal(params[k], v) for k, v in self.snapshot.items() if k.startswith(own))
        self.events.append(name)


@pytest.mark.parametrize("n_critic", [1, 3])
def test_each_batch_makes_n_critic_d_steps_then_one_g_step(tmp_path, n_critic: int) -> None:
    recorder = StepRecorder()
    module = tiny_gan(n_critic=n_critic)
    t = trainer(tmp_path, limit_train_batches=2, callbacks=[recorder])
    t.fit(module, datamodule=digits())
    assert recorder.events == (["D"] * n_critic + ["G"]) * 2
    assert t.global_step == 2 * (n_critic + 1)  # Lightning counts every optimizer step
    assert module.generator_steps.item() == 2
    assert module.images_seen.item() == 2 * 16


@pytest.mark.parametrize("loss", ["minimax", "non_saturating", "wasserstein", "hinge", "least_squares"])
def test_every_loss_trains_with_finite_values(tmp_path, loss: str) -> None:
    module = tiny_gan(loss=loss, gradient_penalty=10.0 if loss == "wasserstein" else 0.0)
    t = trainer(tmp_path, limit_train_batches=4)
    t.fit(module, datamodule=digits())
    logged = t.callback_metrics
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/d_loss"} <= set(logged)
    assert all(torch.isfinite(logged[k]) for k in logged)


def test_weight_clipping_bounds_every_discriminator_weight(tmp_path) -> None:
    module = tiny_gan(loss="wasserstein", weight_clip=0.01)
    trainer(tmp_path, limit_train_batches=2).fit(module, datamodule=digits())
    assert max(p.abs().max().item() for p in module.discriminator.parameters()) <= 0.01 + 1e-7


def test_r1_and_gradient_penalty_change_the_discriminator_update(tmp_path) -> None:
    finals = []
    for kwargs in ({}, {"r1_gamma": 10.0}, {"gradient_penalty": 10.0}):
        module = tiny_gan(**kwargs)
        trainer(tmp_path, limit_train_batches=2, limit_val_batches=0).fit(module, datamodule=digits())
        finals.append(torch.cat([p.flatten() for p in module.discriminator.parameters()]))
    assert not torch.allclose(finals[0], finals[1]) and not torch.allclose(finals[0], finals[2])


def test_user_optimizers_and_schedulers_are_used(tmp_path) -> None:
    module = tiny_gan(
        generator_optimizer=functools.partial(torch.optim.SGD, lr=0.05),
        discriminator_optimizer=functools.partial(torch.optim.RMSprop, lr=0.001),
        generator_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    )
    t = trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=0)
    t.fit(module, datamodule=digits())
    g_opt, d_opt = t.optimizers
    assert isinstance(g_opt, torch.optim.SGD) and isinstance(d_opt, torch.optim.RMSprop)
    assert g_opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.25)  # two epochs of StepLR
    assert d_opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_default_optimizers_are_dcgan_adam() -> None:
    g_opt, d_opt = (c["optimizer"] for c in tiny_gan().configure_optimizers())
    for opt in (g_opt, d_opt):
        assert isinstance(opt, torch.optim.Adam)
        assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)


def test_default_module_fits_mnist_sized_images() -> None:
    module = GANModule()
    assert module.sample(2).shape == (2, 1, 28, 28)
    assert module.discriminator(module.sample(2)).shape == (2,)


def test_sample_is_reproducible_and_leaves_the_mode_alone() -> None:
    module = tiny_gan()
    a = module.sample(4, rng=torch.Generator().manual_seed(1))
    b = module.sample(4, rng=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and module.generator.training


def test_load_from_checkpoint_with_python_nets_samples_identically(tmp_path) -> None:
    module = tiny_gan()
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=digits())
    path = tmp_path / "gan.ckpt"
    t.save_checkpoint(path)
    loaded = GANModule.load_from_checkpoint(
        path,
        generator=MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,)),
        discriminator=MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)),
    )
    assert loaded.generator_steps.item() == 2
    same = [m.sample(6, rng=torch.Generator().manual_seed(7)) for m in (module, loaded)]
    assert torch.equal(*same)


def test_generator_data_shape_mismatch_is_named(tmp_path) -> None:
    module = GANModule(generator=MLPGenerator(latent_dim=4, image_shape=(1, 28, 28), hidden=(8,)))
    with pytest.raises(ValueError, match=r"generator makes 1×28×28 images but the data is 1×8×8"):
        trainer(tmp_path).fit(module, datamodule=digits())


def test_discriminator_must_return_one_logit_per_image(tmp_path) -> None:
    module = GANModule(
        generator=MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(8,)),
        discriminator=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)),
    )
    with pytest.raises(ValueError, match=r"one logit per input, shape \(B,\)"):
        trainer(tmp_path).fit(module, datamodule=digits())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "wgan"}, "unknown GAN loss 'wgan'"),
        ({"n_critic": 0}, "n_critic must be >= 1"),
        ({"gradient_penalty": -1.0}, "must be >= 0"),
        ({"weight_clip": 0.0}, "weight_clip must be > 0"),
        ({"latent_dim": 5}, "latent_dim=5 but the generator takes z of size 4"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_gan(**kwargs)


def test_wasserstein_without_a_lipschitz_constraint_warns() -> None:
    with pytest.warns(UserWarning, match="gradient_penalty=10"):
        tiny_gan(loss="wasserstein")


def test_flush_denormal_is_on_after_setup(tmp_path) -> None:
    torch.set_flush_denormal(False)
    try:
        trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(tiny_gan(), datamodule=digits())
        assert (torch.tensor([1e-20]) * torch.tensor([1e-20])).item() == 0.0  # 1e-40 is denormal: flushed to zero
    finally:
        torch.set_flush_denormal(False)


def test_accumulation_makes_one_iteration_per_group_of_batches(tmp_path) -> None:
    recorder = StepRecorder()
    module = tiny_gan(n_critic=2, accumulate_grad_batches=3)
    trainer(tmp_path, limit_train_batches=7, callbacks=[recorder]).fit(module, datamodule=digits())
    assert recorder.events == ["D", "D", "G"] * 2  # 7 batches: two groups of 3, one batch still waiting
    assert module.generator_steps.item() == 2 and module.images_seen.item() == 6 * 16
    assert len(module._group) == 1


def test_accumulating_two_batches_equals_one_batch_twice_as_large(tmp_path) -> None:
    """Same images, same noise rows: accumulate_grad_batches=2 at batch 8 matches one step at batch 16."""
    finals = []
    for batch_size, accumulate in ((16, 1), (8, 2)):
        module = tiny_gan(
            accumulate_grad_batches=accumulate,
            generator_optimizer=functools.partial(torch.optim.SGD, lr=0.1),
            discriminator_optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        )
        table = torch.randn(64, 4, generator=torch.Generator().manual_seed(5))
        rows = iter(range(0, 64))

        def noise(n: int, rng: torch.Generator | None = None, table=table, rows=rows) -> torch.Tensor:
            start = next(rows)
            for _ in range(n - 1):
                next(rows)
            return table[start : start + n]

        module.noise = noise  # type: ignore[method-assign]
        t = trainer(tmp_path, limit_train_batches=accumulate, limit_val_batches=0)
        t.fit(module, datamodule=digits(batch_size=batch_size))
        finals.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.allclose(finals[0], finals[1], atol=1e-6)
