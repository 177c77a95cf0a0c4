"""Conditional VAEs, latent tools (interpolation, traversal), the rate–distortion pair and the predict outputs."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch.utils.data import DataLoader

from lit_gen import VAEModule
from lit_gen.losses.vae import gaussian_kl
from lit_gen.metrics.features import load_classifier
from lit_gen.modules.latent import linear_path, traversal_grid
from lit_gen.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from tests.helpers import digits, tiny_vae, trainer


def tiny_cvae(**kwargs) -> VAEModule:
    torch.manual_seed(0)
    return VAEModule(
        encoder=MLPEncoder((1, 8, 8), latent_dim=8, hidden=(256,), num_classes=10),
        decoder=MLPDecoder(latent_dim=8, image_shape=(1, 8, 8), hidden=(256,), num_classes=10),
        optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
        **kwargs,
    )


def test_conditional_vae_samples_the_requested_digits(tmp_path) -> None:
    """Trained on the 8×8 digits for 15 epochs, the CVAE's samples are read as the requested class by the shipped
    digits classifier (97.8 % on real test digits): 100 % when this test was written, chance is 10 %."""
    module = tiny_cvae()
    t = trainer(tmp_path, max_epochs=15, limit_train_batches=None, limit_val_batches=None)
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0), batch_size=64))
    classifier, _ = load_classifier("digits")
    labels = torch.arange(500) % 10
    samples = module.sample(500, torch.Generator().manual_seed(0), labels=labels)
    assert samples.shape == (500, 1, 8, 8)
    assert classifier.accuracy(samples, labels) > 0.9


def test_conditional_vae_needs_labels_and_matching_nets(tmp_path) -> None:
    with pytest.raises(ValueError, match="encoder has num_classes=10, the decoder 0"):
        VAEModule(encoder=MLPEncoder((1, 8, 8), 4, num_classes=10), decoder=MLPDecoder(4, (1, 8, 8)))
    with pytest.raises(ValueError, match="needs \\(images, labels\\) batches"):
        loader = DataLoader(torch.rand(32, 1, 8, 8), batch_size=16)  # bare image batches
        trainer(tmp_path, limit_val_batches=0).fit(tiny_cvae(), train_dataloaders=loader)
    with pytest.raises(ValueError, match="labels were given but the VAE is unconditional"):
        tiny_vae().sample(2, labels=torch.tensor([0, 1]))
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="MLPEncoder is class-conditional"):
        tiny_cvae().encode(x)


def test_conditional_conv_nets_differ_by_label() -> None:
    torch.manual_seed(0)
    enc, dec = ConvEncoder((1, 28, 28), 8, width=4, num_classes=3), ConvDecoder(8, (1, 28, 28), width=4, num_classes=3)
    x, z = torch.rand(2, 1, 28, 28), torch.randn(2, 8)
    a, b = enc(x, torch.tensor([0, 0]))[0], enc(x, torch.tensor([1, 1]))[0]
    assert not torch.allclose(a, b)
    assert not torch.allclose(dec(z, torch.tensor([0, 0])), dec(z, torch.tensor([2, 2])))


def test_decoders_make_extra_channels_for_the_logistic() -> None:
    assert ConvDecoder(8, (3, 32, 32), width=4, out_channels=6)(torch.randn(2, 8)).shape == (2, 6, 32, 32)
    decoder = MLPDecoder(8, (1, 8, 8), hidden=(16,), out_channels=2)
    assert decoder(torch.randn(2, 8)).shape == (2, 2, 8, 8) and decoder.image_shape == (1, 8, 8)


def test_linear_path_and_traversal_grid_values() -> None:
    z0, z1 = torch.zeros(1, 2), torch.tensor([[4.0, -2.0]])
    path = linear_path(z0, z1, 5)
    assert path[0].tolist() == [[0.0, 0.0], [1.0, -0.5], [2.0, -1.0], [3.0, -1.5], [4.0, -2.0]]
    grid = traversal_grid(torch.tensor([[0.5, 0.7, 0.9]]), dims=[0, 2], steps=3, span=2.0)
    assert grid.shape == (1, 2, 3, 3)
    assert torch.allclose(grid[0, 0], torch.tensor([[-2.0, 0.7, 0.9], [0.0, 0.7, 0.9], [2.0, 0.7, 0.9]]))
    assert torch.allclose(grid[0, 1], torch.tensor([[0.5, 0.7, -2.0], [0.5, 0.7, 0.0], [0.5, 0.7, 2.0]]))


def test_interpolation_ends_are_the_reconstructions() -> None:
    module, x0, x1 = tiny_vae(), torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    strip = module.interpolate(x0, x1, steps=6)
    assert strip.shape == (3, 6, 1, 8, 8)
    assert torch.allclose(strip[:, 0], module.reconstruct(x0), atol=1e-6)
    assert torch.allclose(strip[:, -1], module.reconstruct(x1), atol=1e-6)


def test_traversal_rows_sweep_one_dimension_each() -> None:
    module, x = tiny_vae(), torch.rand(2, 1, 8, 8)
    grid = module.traverse(x, steps=4, span=2.0)
    assert grid.shape == (2, 2, 4, 1, 8, 8)  # latent_dim 2 rows of 4
    mu = module.encode(x)[0]
    z = mu.clone()
    z[:, 1] = -2.0
    assert torch.allclose(grid[:, 1, 0], module.decode(z), atol=1e-6)


def test_rate_is_the_kl_in_bits_and_distortion_the_mse() -> None:
    module, x = tiny_vae(), torch.rand(4, 1, 8, 8)
    rd = module.rate_distortion(x, value_range=(0.0, 1.0))
    mu, logvar = module.encode(x)
    assert torch.allclose(rd.rate, gaussian_kl(mu, logvar) / math.log(2))
    mse = (module.reconstruct(x) - x).square().flatten(1).mean(1)
    assert torch.allclose(rd.mse, mse) and torch.allclose(rd.psnr, 10 * torch.log10(1 / mse))


def test_test_logs_the_rate_in_bits(tmp_path) -> None:
    module = tiny_vae(importance_samples=0)
    t = trainer(tmp_path, limit_test_batches=2)
    dm = digits(value_range=(0.0, 1.0))
    t.fit(module, datamodule=dm)
    (result,) = t.test(module, datamodule=dm, verbose=False)
    assert result["test/rate"] == pytest.approx(result["test/kl"] / math.log(2), rel=1e-4)


def test_predict_outputs_pairs_interpolations_and_traversals() -> None:
    module = tiny_vae(predict_outputs=["pairs", "interpolations", "traversals"], latent_steps=3)
    x = torch.rand(4, 1, 8, 8)
    out = module.predict_step(x, 0)
    assert set(out) == {"pairs", "interpolations", "traversals"}
    assert out["pairs"].shape == (4, 1, 8, 16)
    assert torch.equal(out["pairs"][..., :8], x) and torch.equal(out["pairs"][..., 8:], module.reconstruct(x))
    assert out["interpolations"].shape == (4, 1, 8, 24)
    assert torch.allclose(out["interpolations"][1, ..., 16:], module.reconstruct(x[2:3])[0], atol=1e-6)
    assert out["traversals"].shape == (4, 1, 16, 24)  # 2 latent dims × 8 px high, 3 steps × 8 px wide


def test_cvae_predict_samples_the_batch_labels() -> None:
    module = tiny_cvae(predict_outputs=["samples"])
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([4, 4, 9])
    out = module.predict_step((x, y), 0)
    expected = module.sample(3, torch.Generator().manual_seed(0), labels=y)  # batch 0's noise seed, one process
    assert torch.equal(out["samples"], expected)


def test_conditional_interpolation_encodes_each_end_with_its_own_label() -> None:
    module, x = tiny_cvae(), torch.rand(2, 1, 8, 8)
    y0, y1 = torch.tensor([1, 2]), torch.tensor([7, 3])
    strip = module.interpolate(x, x.flip(0), steps=3, labels=y0, labels1=y1)
    z1 = module.encode(x.flip(0), y1)[0]
    assert torch.allclose(strip[:, 0], module.reconstruct(x, y0), atol=1e-6)
    assert torch.allclose(strip[:, -1], module.decode(z1, y0), atol=1e-6)  # x1's latent, drawn as x0's class
    out = tiny_cvae(predict_outputs=["interpolations"], latent_steps=3).predict_step((x, y0), 0)
    z_next = module.encode(x.roll(-1, 0), y0.roll(-1, 0))[0]
    assert torch.allclose(out["interpolations"][..., 16:], module.decode(z_next, y0), atol=1e-6)
