"""A generator whose tanh/sigmoid output layer cannot match the data's value_range is named at the start of fit."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from lit_gen import GANModule
from lit_gen.modules.output_range import output_layer, range_mismatch, warn_on_range_mismatch
from lit_gen.nets import DCGANGenerator, MLPDiscriminator, MLPGenerator, ResNetGenerator
from tests.helpers import digits, trainer


def fit_and_collect(tmp_path, generator: nn.Module, value_range: tuple[float, float]) -> list[str]:
    module = GANModule(generator=generator, discriminator=MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(module, datamodule=digits(value_range))
    return [str(w.message) for w in caught if "output layer is" in str(w.message)]


def test_tanh_generator_on_unit_range_data_is_named(tmp_path) -> None:
    (message,) = fit_and_collect(tmp_path, MLPGenerator(4, (1, 8, 8), (16,)), (0.0, 1.0))
    assert "output layer is tanh (values in [-1, 1]) but the data's value_range is [0, 1]" in message
    assert "value_range=(-1, 1) on the DataModule (--data.value_range=[-1,1])" in message
    assert "output_activation='sigmoid'" in message


@pytest.mark.parametrize(
    ("activation", "value_range"), [("tanh", (-1.0, 1.0)), ("sigmoid", (0.0, 1.0)), ("none", (0.0, 1.0))]
)
def test_matching_or_unbounded_outputs_are_silent(activation: str, value_range, tmp_path) -> None:
    generator = MLPGenerator(4, (1, 8, 8), (16,), output_activation=activation)
    assert fit_and_collect(tmp_path, generator, value_range) == []


def test_the_check_draws_no_random_numbers_and_keeps_the_mode(tmp_path) -> None:
    """Training with and without the check is identical: the probe's noise comes from its own generator."""
    generator = MLPGenerator(4, (1, 8, 8), (16,))
    generator.train()
    state = torch.get_rng_state()
    with pytest.warns(UserWarning, match="output layer is tanh"):
        warn_on_range_mismatch(generator, torch.zeros(2, 4), None, (0.0, 1.0))
    assert torch.equal(torch.get_rng_state(), state) and generator.training


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        (MLPGenerator(4, (1, 8, 8), (16,)), nn.Tanh),
        (DCGANGenerator(latent_dim=4, image_shape=(1, 16, 16), width=4, output_activation="sigmoid"), nn.Sigmoid),
        (ResNetGenerator(latent_dim=4, image_shape=(1, 16, 16), width=8), nn.Tanh),
        (MLPGenerator(4, (1, 8, 8), (16,), output_activation="none"), nn.Identity),
    ],
)
def test_output_layer_of_the_shipped_generators(net: nn.Module, expected: type) -> None:
    assert type(output_layer(net.eval(), torch.zeros(2, 4))) is expected


def test_range_rule() -> None:
    assert range_mismatch(nn.Tanh(), (-1.0, 1.0)) is None and range_mismatch(nn.Sigmoid(), (0.0, 1.0)) is None
    assert range_mismatch(nn.Identity(), (0.0, 255.0)) is None
    assert "value_range=(0, 1)" in range_mismatch(nn.Sigmoid(), (-1.0, 1.0))
    assert "use a generator whose output fits" in range_mismatch(nn.Tanh(), (0.0, 255.0))


def test_the_probe_follows_converted_weights() -> None:
    """Under precision="bf16-true" / "64-true" the generator's weights are converted but the noise is float32."""
    generator = MLPGenerator(4, (1, 8, 8), (16,)).to(torch.float64)
    with pytest.warns(UserWarning, match="output layer is tanh"):
        warn_on_range_mismatch(generator, torch.zeros(2, 4), None, (0.0, 1.0))
