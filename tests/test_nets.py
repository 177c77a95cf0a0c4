from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lit_gen.nets import (
    ConvDecoder,
    ConvEncoder,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDecoder,
    MLPDiscriminator,
    MLPEncoder,
    MLPGenerator,
)
from lit_gen.nets.shapes import conv_plan


@pytest.mark.parametrize(("side", "plan"), [(8, (4, 1)), (28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (12, (6, 1))])
def test_conv_plan(side: int, plan: tuple[int, int]) -> None:
    assert conv_plan(side) == plan


@pytest.mark.parametrize("side", [5, 7, 9, 15])
def test_conv_plan_rejects_sides_without_a_stride_two_stage(side: int) -> None:
    with pytest.raises(ValueError, match=f"got {side}.*DataModule's image_size"):
        conv_plan(side)


@pytest.mark.parametrize(("channels", "side"), [(1, 8), (1, 28), (3, 32), (3, 64)])
def test_dcgan_shapes(channels: int, side: int) -> None:
    g = DCGANGenerator(latent_dim=5, image_shape=(channels, side, side), width=4)
    d = DCGANDiscriminator(image_shape=(channels, side, side), width=4)
    x = g(torch.randn(3, 5))
    assert x.shape == (3, channels, side, side)
    assert x.abs().max() <= 1  # tanh
    assert d(x).shape == (3,)


def test_dcgan_64_doubles_width_per_stage_as_in_the_paper() -> None:
    g = DCGANGenerator(latent_dim=100, image_shape=(3, 64, 64), width=64)
    widths = [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 3]


def test_conv_vae_shapes() -> None:
    enc, dec = ConvEncoder((1, 28, 28), latent_dim=3, width=4), ConvDecoder(3, (1, 28, 28), width=4)
    mu, logvar = enc(torch.rand(2, 1, 28, 28))
    assert mu.shape == logvar.shape == (2, 3)
    assert dec(mu).shape == (2, 1, 28, 28)


def test_mlp_shapes() -> None:
    g, d = MLPGenerator(4, (1, 8, 8), hidden=(8,)), MLPDiscriminator((1, 8, 8), hidden=(8,))
    assert d(g(torch.randn(5, 4))).shape == (5,)
    mu, _ = MLPEncoder((1, 8, 8), 2, hidden=(8,))(torch.rand(5, 1, 8, 8))
    assert mu.shape == (5, 2) and MLPDecoder(2, (1, 8, 8), hidden=(8,))(mu).shape == (5, 1, 8, 8)


def test_dcgan_init_follows_the_paper() -> None:
    g = DCGANGenerator(latent_dim=64, image_shape=(1, 28, 28), width=64)
    w = g.net[0].weight
    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="square"):
        DCGANGenerator(image_shape=(1, 28, 32))
    with pytest.raises(ValueError, match="channels, height, width"):
        DCGANGenerator(image_shape=(28, 28))
    with pytest.raises(ValueError, match="positive sizes"):
        MLPGenerator(image_shape=(0, 2))


def test_mlp_nets_take_vectors() -> None:
    g, d = MLPGenerator(latent_dim=2, image_shape=(2,), hidden=(8,)), MLPDiscriminator(image_shape=(2,), hidden=(8,))
    points = g(torch.randn(5, 2))
    assert points.shape == (5, 2) and d(points).shape == (5,)


def test_importing_nets_does_not_import_lightning() -> None:
    code = (
        "import sys, lit_gen.nets, lit_gen.losses; "
        "print([m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mlp_discriminator_loads_checkpoints_from_before_the_head_split() -> None:
    torch.manual_seed(0)
    new = MLPDiscriminator((1, 8, 8), (16, 8))
    old_keys = {k.replace("head.", "net.4."): v for k, v in new.state_dict().items()}  # lit_gen 0.1's layout
    assert "net.4.weight" in old_keys
    again = MLPDiscriminator((1, 8, 8), (16, 8))
    again.load_state_dict(old_keys)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(again(x), new(x))
