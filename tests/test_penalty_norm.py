"""A per-example gradient penalty with a batch-norm discriminator warns and names the fix."""

from __future__ import annotations

import warnings

import pytest
from torch import nn

from lit_gen import GANModule
from lit_gen.nets import DCGANDiscriminator, MLPDiscriminator


def test_a_penalty_with_the_default_batch_norm_discriminator_warns() -> None:
    with pytest.warns(UserWarning, match=r"gradient_penalty=10: the default discriminator, DCGANDiscriminator\(norm="):
        GANModule(gradient_penalty=10.0, loss="wasserstein")
    with pytest.warns(UserWarning, match=r"DCGANDiscriminator\(image_shape, norm='none'"):
        GANModule(r1_gamma=0.1)


def test_a_penalty_with_a_custom_batch_norm_discriminator_warns() -> None:
    d = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    with pytest.warns(UserWarning, match=r"gradient_penalty=1 and r1_gamma=0.5: the discriminator \(Sequential\) has"):
        GANModule(discriminator=d, gradient_penalty=1.0, r1_gamma=0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"r1_gamma": 0.1, "discriminator": DCGANDiscriminator(norm="none")},
        {"gradient_penalty": 10.0, "discriminator": MLPDiscriminator((1, 28, 28)), "loss": "wasserstein"},
        {},  # batch norm without a penalty is DCGAN itself
    ],
)
def test_no_warning_without_batch_norm_or_without_penalty(kwargs: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GANModule(**kwargs)
