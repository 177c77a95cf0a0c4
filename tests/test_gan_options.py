"""GANModule's training options, each checked against a value worked out by hand: spectral norm, lazy R1/GP,
PacGAN packing, class conditioning, label smoothing, instance noise, per-step schedulers, DiffAugment and TTUR."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LinearLR
from torch.utils.data import DataLoader

import lit_gen.modules.gan as gan_module
from lit_gen import GANModule
from lit_gen.cli import LitGenCLI
from lit_gen.losses.gan import get_gan_loss, least_squares_discriminator_loss, minimax_discriminator_loss
from lit_gen.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from lit_gen.nets.conditioning import check_labels, pack
from tests.helpers import digits, tiny_gan, trainer

ROOT = Path(__file__).resolve().parents[1]


def sigma_max(m: nn.Module) -> float:
    """Largest singular value of a layer's weight as the forward pass uses it, reshaped to ``(out, -1)``."""
    return torch.linalg.matrix_norm(m.weight.detach().reshape(m.weight.shape[0], -1), ord=2).item()


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class Recording(nn.Module):
    """Wraps a discriminator and records, per call, its input, labels, whether D is being trained (its parameters
    require grad: False inside the generator step) and whether it is in train mode."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.image_shape = inner.image_shape
        self.num_classes = inner.num_classes
        self.calls: list[dict[str, Any]] = []

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        d_step = next(self.inner.parameters()).requires_grad
        self.calls.append(
            {
                "x": x.detach().clone(),
                "labels": None if labels is None else labels.clone(),
                "d_step": d_step,
                "train": self.training,
            }
        )
        return self.inner(x, labels) if self.num_classes else self.inner(x)


class RecordBatches(L.Callback):
    def __init__(self) -> None:
        self.train: list[Any] = []
        self.val: list[Any] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, i: int) -> None:
        self.train.append([t.clone() for t in batch])

    def on_validation_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, i: int) -> None:
        self.val.append([t.clone() for t in batch])


# -- spectral normalization ------------------------------------------------------------------------------------------
def spectral_nets(spectral: bool) -> list[nn.Module]:
    torch.manual_seed(0)
    return [
        DCGANDiscriminator((1, 28, 28), width=8, norm="none", spectral_norm=spectral),
        MLPDiscriminator((1, 8, 8), (16,), spectral_norm=spectral),
    ]


def test_spectral_norm_makes_every_layer_1_lipschitz_after_power_iteration() -> None:
    for net in spectral_nets(True):
        x = torch.randn(4, *net.image_shape)
        for _ in range(30):
            net(x)  # train mode: one power iteration per forward
        net.eval()
        sigmas = [sigma_max(m) for m in weighted_layers(net)]
        assert len(sigmas) >= 2 and all(0.97 <= s <= 1.01 for s in sigmas), sigmas


def test_without_spectral_norm_some_layer_is_far_from_1_lipschitz() -> None:
    for net in spectral_nets(False):
        assert max(abs(sigma_max(m) - 1) for m in weighted_layers(net)) > 0.3


def test_spectrally_normalized_mlp_discriminator_is_1_lipschitz() -> None:
    net = spectral_nets(True)[1]
    for _ in range(30):
        net(torch.randn(4, 1, 8, 8))
    net.eval()
    x, y = torch.randn(256, 1, 8, 8), torch.randn(256, 1, 8, 8)
    x[:128] = y[:128] + 0.01 * torch.randn(128, 1, 8, 8)  # near pairs too
    with torch.no_grad():
        gaps = (net(x) - net(y)).abs()
    assert (gaps <= (x - y).flatten(1).norm(dim=1) * 1.001).all()


# -- lazy regularization ---------------------------------------------------------------------------------------------
def record_calls(monkeypatch: pytest.MonkeyPatch, name: str, module: GANModule) -> list[tuple[int, Tensor]]:
    """Replace ``lit_gen.modules.gan.<name>`` by a wrapper that keeps the D step (n_critic=1: the generator step
    count) and the return value of every call."""
    original, calls = getattr(gan_module, name), []

    def wrapper(*args: Any, **kwargs: Any) -> Tensor:
        out = original(*args, **kwargs)
        calls.append((module._step, out.detach().clone()))
        return out

    monkeypatch.setattr(gan_module, name, wrapper)
    return calls


@pytest.mark.parametrize("interval, steps", [(3, [0, 3]), (1, [0, 1, 2, 3, 4, 5])])
def test_lazy_r1_runs_every_k_th_d_step_with_weight_k(tmp_path, monkeypatch, interval: int, steps: list) -> None:
    module = tiny_gan(r1_gamma=2.0, d_reg_interval=interval)
    calls = record_calls(monkeypatch, "input_gradient_sq_norm", module)
    trainer(tmp_path, limit_train_batches=6, limit_val_batches=0).fit(module, datamodule=digits())
    assert [step for step, _ in calls] == steps
    expected = interval * 0.5 * 2.0 * calls[-1][1].sum() / 16  # the mean over the batch of 16, times k
    assert module.last_penalty.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("interval, steps", [(2, [0, 2, 4]), (1, [0, 1, 2, 3, 4, 5])])
def test_lazy_gradient_penalty_runs_every_k_th_d_step_with_weight_k(
    tmp_path, monkeypatch, interval: int, steps: list
) -> None:
    module = tiny_gan(loss="wasserstein", gradient_penalty=10.0, d_reg_interval=interval)
    calls = record_calls(monkeypatch, "gradient_penalty", module)
    trainer(tmp_path, limit_train_batches=6, limit_val_batches=0).fit(module, datamodule=digits())
    assert [step for step, _ in calls] == steps
    assert module.last_penalty.item() == pytest.approx(interval * 10.0 * calls[-1][1].item(), abs=1e-6)


def test_lazy_regularization_counts_discriminator_steps_across_n_critic(tmp_path, monkeypatch) -> None:
    # n_critic=2, interval 3: D steps 0..7 over 4 batches, the penalty on D steps 0, 3, 6 (batches 0, 1, 3)
    module = tiny_gan(r1_gamma=1.0, d_reg_interval=3, n_critic=2)
    calls = record_calls(monkeypatch, "input_gradient_sq_norm", module)
    trainer(tmp_path, limit_train_batches=4, limit_val_batches=0).fit(module, datamodule=digits())
    assert [step for step, _ in calls] == [0, 1, 3]


# -- penalty weights in the module -----------------------------------------------------------------------------------
class LinearCritic(nn.Module):
    """``D(x) = <w, flatten(x)>`` with ``w = 0.25`` everywhere: gradient ``w`` for every input, ``||w|| = 2``."""

    image_shape = (1, 8, 8)
    num_classes = 0

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((64,), 0.25))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.w


@pytest.mark.parametrize("reg", [1, 3])
def test_module_weights_r1_and_gp_by_gamma_lambda_and_the_lazy_factor(monkeypatch, reg: int) -> None:
    real = torch.rand(8, 1, 8, 8)

    def d_loss(**kwargs: float) -> float:
        torch.manual_seed(1)  # the same generator and fakes in every call
        module = GANModule(generator=MLPGenerator(4, (1, 8, 8), (8,)), discriminator=LinearCritic(), **kwargs)
        monkeypatch.setattr(module, "_grad_scale", lambda: 1.0)  # no trainer attached
        return module._discriminator_loss(real, None, reg)[0].item()

    plain = d_loss()
    assert d_loss(r1_gamma=3.0) - plain == pytest.approx(reg * 0.5 * 3.0 * 4.0, rel=1e-5)  # γ/2·||w||²
    assert d_loss(gradient_penalty=5.0) - plain == pytest.approx(reg * 5.0 * 1.0, rel=1e-5)  # λ·(||w|| - 1)²


# -- PacGAN ----------------------------------------------------------------------------------------------------------
def test_pack_stacks_consecutive_samples_along_channels_and_trims() -> None:
    x = torch.arange(10 * 2 * 3 * 3, dtype=torch.float32).reshape(10, 2, 3, 3)
    packed = pack(x, 4)
    assert packed.shape == (2, 8, 3, 3)
    for i in range(2):
        for j in range(4):
            assert torch.equal(packed[i, 2 * j : 2 * (j + 1)], x[i * 4 + j])
    vectors = torch.arange(20.0).reshape(10, 2)
    assert torch.equal(pack(vectors, 4), vectors[:8].reshape(2, 8))
    assert pack(x, 1) is x


def test_packed_gan_feeds_the_discriminator_packs_of_four(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    recording = Recording(MLPDiscriminator((4, 8, 8), (16,)))
    module = GANModule(generator=MLPGenerator(4, (1, 8, 8), (16,)), discriminator=recording, pack=4)
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=1).fit(module, datamodule=digits())
    assert len(recording.calls) >= 6 and {c["x"].shape for c in recording.calls} == {(4, 4, 8, 8)}


def test_packed_gan_validates_a_last_batch_smaller_than_the_pack(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = GANModule(
        generator=MLPGenerator(4, (1, 8, 8), (16,)), discriminator=MLPDiscriminator((4, 8, 8), (16,)), pack=4
    )
    module.log_dict = lambda metrics, **kwargs: logged.append(metrics)  # type: ignore[method-assign]
    logged: list = []
    batch = (torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.long))
    module._evaluate(batch, "val", 0)  # 3 images: no complete pack, no D metrics, no error
    assert logged == []
    module._evaluate((torch.zeros(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)), "val", 0)  # 6 -> one pack of 4
    assert set(logged[0]) == {"val/d_loss", "val/g_loss", "val/d_real", "val/d_fake"}


def test_conditional_gan_on_data_with_another_class_count_is_refused(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = GANModule(
        generator=MLPGenerator(4, (1, 8, 8), (16,), num_classes=5),
        discriminator=MLPDiscriminator((1, 8, 8), (16,), num_classes=5),
    )
    with pytest.raises(
        ValueError, match="conditional on 5 classes but the data has 10: build both nets with num_classes=10"
    ):
        trainer(tmp_path, limit_train_batches=1).fit(module, datamodule=digits())


def test_packed_gan_names_the_shape_the_discriminator_needs() -> None:
    with pytest.raises(ValueError, match=r"image_shape \[4, 8, 8\]"):
        GANModule(generator=MLPGenerator(4, (1, 8, 8)), discriminator=MLPDiscriminator((1, 8, 8)), pack=4)


def test_pack_with_a_conditional_gan_is_refused() -> None:
    with pytest.raises(ValueError, match="pack > 1"):
        GANModule(
            generator=MLPGenerator(4, (1, 8, 8), num_classes=10),
            discriminator=MLPDiscriminator((4, 8, 8), num_classes=10),
            pack=4,
        )


# -- class conditioning ----------------------------------------------------------------------------------------------
class LabelPainter(nn.Module):
    """A conditional generator whose images are their label everywhere: ``G(z, y)[b] = y[b]``."""

    latent_dim = 4
    num_classes = 10
    image_shape = (1, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        labels = check_labels(labels, self.num_classes, z.shape[0], "LabelPainter")
        return (self.scale * labels.float()).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)


def painter_gan() -> GANModule:
    return GANModule(generator=LabelPainter(), discriminator=MLPDiscriminator((1, 8, 8), (8,), num_classes=10))


def decode(images: Tensor) -> Tensor:
    assert torch.equal(images, images[:, :1, :1, :1].expand_as(images))
    return images[:, 0, 0, 0].long()


def test_sample_uses_the_given_labels_and_defaults_to_cycling_through_the_classes() -> None:
    module = painter_gan()
    assert decode(module.sample(20)).tolist() == list(range(10)) * 2
    y = torch.tensor([7, 3, 3, 0, 9])
    assert torch.equal(decode(module.sample(5, labels=y)), y)


def test_predict_step_samples_the_batch_labels() -> None:
    y = torch.tensor([4, 1, 8, 8, 2, 0])
    out = painter_gan().predict_step((torch.zeros(6, 1, 8, 8), y), 0)
    assert torch.equal(decode(out["samples"]), y)


def test_labels_for_an_unconditional_gan_are_refused() -> None:
    with pytest.raises(ValueError, match="unconditional"):
        tiny_gan().sample(3, labels=torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    "net, inputs",
    [
        (MLPGenerator(4, (1, 8, 8), (8,), num_classes=10), torch.randn(3, 4)),
        (MLPDiscriminator((1, 8, 8), (8,), num_classes=10), torch.randn(3, 1, 8, 8)),
        (DCGANGenerator(4, (1, 8, 8), width=4, num_classes=10), torch.randn(3, 4)),
        (DCGANDiscriminator((1, 8, 8), width=4, num_classes=10), torch.randn(3, 1, 8, 8)),
    ],
)
def test_conditional_nets_refuse_missing_out_of_range_and_int32_labels(net: nn.Module, inputs: Tensor) -> None:
    with pytest.raises(ValueError, match="got no labels"):
        net(inputs)
    with pytest.raises(ValueError, match=r"labels in \[0, 10\]"):
        net(inputs, torch.tensor([0, 10, 2]))
    with pytest.raises(ValueError, match=r"labels in \[-1, 2\]"):
        net(inputs, torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match="int64"):
        net(inputs, torch.tensor([0, 1, 2], dtype=torch.int32))


def test_d_step_sees_the_batch_labels_and_g_step_random_ones(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    recording = Recording(MLPDiscriminator((1, 8, 8), (16,), num_classes=10))
    module = GANModule(generator=MLPGenerator(4, (1, 8, 8), (16,), num_classes=10), discriminator=recording)
    batches = RecordBatches()
    trainer(tmp_path, limit_train_batches=3, limit_val_batches=0, callbacks=[batches]).fit(module, datamodule=digits())
    calls = recording.calls
    assert [c["d_step"] for c in calls] == [True, True, False] * 3  # real, fake, then the generator step
    g_labels = []
    for i, (images, labels) in enumerate(batches.train):
        real, fake, g = calls[3 * i : 3 * i + 3]
        assert torch.equal(real["x"], images)
        assert torch.equal(real["labels"], labels) and torch.equal(fake["labels"], labels)
        assert not torch.equal(g["labels"], labels)
        g_labels.append(g["labels"])
    g_labels = torch.cat(g_labels)
    assert g_labels.dtype == torch.int64 and g_labels.min() >= 0 and g_labels.max() < 10
    assert len(g_labels.unique()) >= 8  # 48 uniform draws over 10 classes


def test_conditional_gan_on_unlabelled_data_says_it_needs_labels(tmp_path) -> None:
    module = GANModule(
        generator=MLPGenerator(4, (1, 8, 8), (8,), num_classes=10),
        discriminator=MLPDiscriminator((1, 8, 8), (8,), num_classes=10),
    )
    loader = DataLoader(torch.rand(32, 1, 8, 8) * 2 - 1, batch_size=16)  # bare image batches
    with pytest.raises(ValueError, match=r"needs \(images, labels\) batches"):
        trainer(tmp_path, limit_val_batches=0).fit(module, train_dataloaders=loader)


# -- one-sided label smoothing ---------------------------------------------------------------------------------------
def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_smoothed_minimax_is_the_cross_entropy_against_the_smoothed_target() -> None:
    r, f, t = torch.tensor([2.0]), torch.tensor([-1.0]), 0.9
    by_hand = t * softplus(-2.0) + (1 - t) * softplus(2.0) + softplus(-1.0)
    assert minimax_discriminator_loss(r, f, real_target=t).item() == pytest.approx(by_hand, rel=1e-6)
    assert least_squares_discriminator_loss(r, f, real_target=t).item() == pytest.approx(
        0.5 * (2.0 - t) ** 2 + 0.5 * 1.0, rel=1e-6
    )


def test_label_smoothing_is_refused_for_losses_without_labels() -> None:
    with pytest.raises(ValueError, match="'minimax', 'non_saturating', 'least_squares'.*'hinge'"):
        get_gan_loss("hinge", 0.1)


@pytest.mark.parametrize("loss", ["minimax", "non_saturating"])
def test_module_label_smoothing_sets_the_real_target(loss: str) -> None:
    module = tiny_gan(loss=loss, label_smoothing=0.1)
    real, fake = torch.tensor([2.0, -0.5]), torch.tensor([-1.0, 0.5])
    by_hand = sum(0.9 * softplus(-r) + 0.1 * softplus(r) for r in (2.0, -0.5)) / 2
    by_hand += sum(softplus(v) for v in (-1.0, 0.5)) / 2
    assert module.losses.discriminator(real, fake).item() == pytest.approx(by_hand, rel=1e-6)
    assert module.losses.generator(fake).item() == get_gan_loss(loss).generator(fake).item()  # G is unchanged


# -- instance noise --------------------------------------------------------------------------------------------------
def test_instance_noise_anneals_linearly_to_zero() -> None:
    module = tiny_gan(instance_noise=0.5, instance_noise_steps=10)
    stds = {}
    for step in (0, 5, 10, 25):
        module._step = step
        stds[step] = module.instance_noise_std()
    assert stds == {0: 0.5, 5: 0.25, 10: 0.0, 25: 0.0}
    module._step = 5
    noisy = module._d_input(torch.zeros(1000, 1, 8, 8))
    assert noisy.mean().abs().item() < 0.01 and noisy.std().item() == pytest.approx(0.25, rel=0.02)
    module._step = 10
    assert torch.equal(module._d_input(torch.zeros(4, 1, 8, 8)), torch.zeros(4, 1, 8, 8))


def test_instance_noise_without_steps_is_constant() -> None:
    module = tiny_gan(instance_noise=0.5)
    module._step = 1000
    assert module.instance_noise_std() == 0.5
    assert module._d_input(torch.zeros(1000, 1, 8, 8)).std().item() == pytest.approx(0.5, rel=0.02)


# -- learning-rate schedules -----------------------------------------------------------------------------------------
class RecordLR(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize(
    "interval, within, after", [("step", [0.9, 0.8, 0.7, 0.6], 0.6), ("epoch", [1.0, 1.0, 1.0, 1.0], 0.9)]
)
def test_generator_scheduler_steps_per_batch_or_per_epoch(tmp_path, interval: str, within: list, after: float) -> None:
    module = tiny_gan(
        generator_scheduler=lambda opt: LinearLR(opt, 1.0, 0.0, total_iters=10), scheduler_interval=interval
    )
    recorder = RecordLR()
    t = trainer(tmp_path, limit_train_batches=4, limit_val_batches=0, callbacks=[recorder])
    t.fit(module, datamodule=digits())
    assert recorder.lrs == pytest.approx([2e-4 * f for f in within], abs=1e-9)
    assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(2e-4 * after, abs=1e-9)
    assert t.optimizers[1].param_groups[0]["lr"] == 2e-4  # D has no scheduler


# -- DiffAugment -----------------------------------------------------------------------------------------------------
def test_diffaugment_applies_in_training_only(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    recording = Recording(MLPDiscriminator((1, 8, 8), (16,)))
    module = GANModule(generator=MLPGenerator(4, (1, 8, 8), (16,)), discriminator=recording, diffaugment="translation")
    batches = RecordBatches()
    t = trainer(tmp_path, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[batches])
    t.fit(module, datamodule=digits())
    train_calls = [c for c in recording.calls if c["train"]]
    val_calls = [c for c in recording.calls if not c["train"]]
    assert len(train_calls) == 6 and len(val_calls) == 2
    for i, (images, _) in enumerate(batches.train):
        real = train_calls[3 * i]["x"]
        unchanged = sum(torch.equal(a, b) for a, b in zip(real, images, strict=True))
        assert unchanged < 8  # 1 in 9 shifts is (0, 0)
        assert real.sum() != images.sum()  # shifted in pixels hold the middle of the range
    assert torch.equal(val_calls[0]["x"], batches.val[0][0])


def test_unknown_diffaugment_op_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'bogus'.*\['color', 'translation', 'cutout'\]"):
        tiny_gan(diffaugment="color,bogus")


def test_diffaugment_on_vector_data_says_it_needs_images() -> None:
    with pytest.raises(ValueError, match=r"diffaugment augments images \(C, H, W\); this generator makes \(2,\)"):
        GANModule(
            generator=MLPGenerator(2, (2,), (8,)), discriminator=MLPDiscriminator((2,), (8,)), diffaugment="translation"
        )


# -- TTUR through the CLI --------------------------------------------------------------------------------------------
def test_ttur_learning_rates_from_the_command_line(tmp_path) -> None:
    cli = LitGenCLI(
        args=[
            "--config",
            str(ROOT / "configs/gan/mnist.yaml"),
            "--model.generator_optimizer.init_args.lr=0.0001",
            "--model.discriminator_optimizer.init_args.lr=0.0004",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    configs = cli.model.configure_optimizers()
    g_opt, d_opt = (c["optimizer"] for c in configs)
    assert g_opt.param_groups[0]["lr"] == 1e-4 and d_opt.param_groups[0]["lr"] == 4e-4
    assert g_opt.param_groups[0]["betas"] == (0.5, 0.999)
    g_params = {id(p) for p in cli.model.generator.parameters()}
    assert {id(p) for p in g_opt.param_groups[0]["params"]} == g_params
