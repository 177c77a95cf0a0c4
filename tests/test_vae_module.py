from __future__ import annotations

import math

import pytest
import torch

from lit_gen import VAEModule
from lit_gen.losses.vae import bernoulli_nll, gaussian_kl
from lit_gen.nets import MLPDecoder, MLPEncoder
from tests.helpers import digits, tiny_vae, trainer


def test_loss_terms_are_beta_weighted_per_example_nats() -> None:
    module = tiny_vae(beta=4.0)
    x = torch.rand(5, 1, 8, 8)
    torch.manual_seed(1)
    terms = module.loss_terms(x)
    torch.manual_seed(1)
    out = module(x)
    recon, kl = bernoulli_nll(out.recon, x).mean(), gaussian_kl(out.mu, out.logvar).mean()
    assert terms["recon"].item() == pytest.approx(recon.item())
    assert terms["kl"].item() == pytest.approx(kl.item())
    assert terms["loss"].item() == pytest.approx(recon.item() + 4.0 * kl.item())
    assert terms["elbo"].item() == pytest.approx(-(recon.item() + kl.item()))


def test_an_untrained_vae_costs_about_64_log_2_nats_per_8x8_image() -> None:
    module = tiny_vae()
    with torch.no_grad():
        for p in module.decoder.parameters():
            p.zero_()  # logits 0: every pixel has probability 1/2
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    assert module.loss_terms(x)["recon"].item() == pytest.approx(64 * math.log(2), rel=1e-5)


def test_training_lowers_the_loss(tmp_path) -> None:
    module = tiny_vae()
    dm = digits(value_range=(0.0, 1.0), batch_size=64)
    t = trainer(tmp_path, max_epochs=3, limit_train_batches=None, limit_val_batches=None)
    dm.setup()
    before = module.loss_terms(next(iter(dm.val_dataloader()))[0].float() / 255)["loss"].item()
    t.fit(module, datamodule=dm)
    after = t.callback_metrics["val/loss"].item()
    assert after < before - 5.0
    assert {"train/loss", "train/recon", "train/kl", "train/elbo", "val/elbo"} <= set(t.callback_metrics)


def test_helpers_shapes_and_ranges() -> None:
    module = tiny_vae()
    x = torch.rand(4, 1, 8, 8)
    mu, logvar = module.encode(x)
    assert mu.shape == logvar.shape == (4, 2)
    for images in (module.decode(mu), module.reconstruct(x), module.sample(4)):
        assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    a, b = (module.sample(3, rng=torch.Generator().manual_seed(2)) for _ in range(2))
    assert torch.equal(a, b)


def test_bernoulli_likelihood_refuses_pixels_outside_zero_one(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs pixels in \[0, 1\].*value_range"):
        trainer(tmp_path).fit(tiny_vae(), datamodule=digits(value_range=(-1.0, 1.0)))


def test_gaussian_likelihood_accepts_any_range(tmp_path) -> None:
    t = trainer(tmp_path)
    t.fit(tiny_vae(likelihood="gaussian", gaussian_std=0.5), datamodule=digits(value_range=(-1.0, 1.0)))
    assert torch.isfinite(t.callback_metrics["train/loss"])


def test_decoder_data_shape_mismatch_is_named(tmp_path) -> None:
    module = VAEModule(encoder=MLPEncoder((1, 8, 8), 2), decoder=MLPDecoder(2, (1, 28, 28)))
    with pytest.raises(ValueError, match="decoder makes 1×28×28 images but the data is 1×8×8"):
        trainer(tmp_path).fit(module, datamodule=digits(value_range=(0.0, 1.0)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"likelihood": "poisson"}, "unknown likelihood"),
        ({"latent_dim": 3}, "disagree"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_vae(**kwargs)


def test_load_from_checkpoint_reconstructs_identically(tmp_path) -> None:
    module = tiny_vae()
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    t.save_checkpoint(tmp_path / "vae.ckpt")
    loaded = VAEModule.load_from_checkpoint(
        tmp_path / "vae.ckpt",
        encoder=MLPEncoder((1, 8, 8), latent_dim=2, hidden=(16,)),
        decoder=MLPDecoder(latent_dim=2, image_shape=(1, 8, 8), hidden=(16,)),
    )
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(module.reconstruct(x), loaded.reconstruct(x))
