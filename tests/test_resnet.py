from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrize import is_parametrized

from lit_gen.nets.resnet import ConditionalBatchNorm2d, ResNetDiscriminator, ResNetGenerator


@pytest.mark.parametrize(("channels", "side", "stages"), [(1, 28, 2), (3, 32, 3), (3, 64, 4)])
def test_shapes(channels: int, side: int, stages: int) -> None:
    g = ResNetGenerator(latent_dim=8, image_shape=(channels, side, side), width=8)
    d = ResNetDiscriminator(image_shape=(channels, side, side), width=8)
    assert g.image_shape == d.image_shape == (channels, side, side) and g.latent_dim == 8
    assert len(g.blocks) == stages
    x = g(torch.randn(3, 8))
    assert x.shape == (3, channels, side, side)
    assert x.abs().max() <= 1  # tanh
    assert d(x).shape == (3,)


def block_output_sides(d: ResNetDiscriminator, side: int) -> list[int]:
    sides: list[int] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: sides.append(out.shape[-1])) for b in d.blocks]
    d(torch.randn(2, 3, side, side))
    for h in hooks:
        h.remove()
    return sides


@pytest.mark.parametrize(("side", "sides"), [(32, [16, 8, 8, 8]), (28, [14, 7, 7, 7]), (64, [32, 16, 8, 8])])
def test_discriminator_has_sngan_block_structure(side: int, sides: list[int]) -> None:
    d = ResNetDiscriminator(image_shape=(3, side, side), width=4)
    assert block_output_sides(d, side) == sides
    if side == 32:  # SNGAN CIFAR-10 D: optimized down, down, same, same
        flags = [(b.optimized, b.downsample) for b in d.blocks]
        assert flags == [(True, True), (False, True), (False, False), (False, False)]
        assert [b.shortcut is None for b in d.blocks] == [False, False, True, True]


def test_default_sizes_match_sngan_cifar() -> None:
    g, d = ResNetGenerator(), ResNetDiscriminator()
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    assert 4.2e6 < n_g < 4.4e6 and 1.0e6 < n_d < 1.1e6
    assert [m.out_channels for m in g.modules() if isinstance(m, nn.Conv2d)][-1] == 3
    assert g.linear.out_features == 256 * 4 * 4 and d.linear.in_features == 128


@pytest.mark.parametrize("num_classes", [0, 5])
def test_spectral_norm_on_every_weight_layer(num_classes: int) -> None:
    layers = (nn.Conv2d, nn.Linear, nn.Embedding)
    d = ResNetDiscriminator(image_shape=(3, 32, 32), width=4, num_classes=num_classes)
    wrapped = [is_parametrized(m, "weight") for m in d.modules() if isinstance(m, layers)]
    assert len(wrapped) == 2 * 4 + 2 + 1 + bool(num_classes) and all(wrapped)  # 8 convs, 2 shortcuts, linear
    plain = ResNetDiscriminator(image_shape=(3, 32, 32), width=4, num_classes=num_classes, spectral_norm=False)
    assert not any(is_parametrized(m) for m in plain.modules())


def test_spectral_norm_makes_each_layer_1_lipschitz() -> None:
    d = ResNetDiscriminator(image_shape=(3, 8, 8), width=4).train()
    with torch.no_grad():
        for _ in range(20):  # the power iteration takes one step per training forward
            d(torch.randn(2, 3, 8, 8))
        for layer in (d.linear, d.blocks[1].conv1):
            sigma = torch.linalg.matrix_norm(layer.weight.flatten(1), 2)
            assert sigma == pytest.approx(1.0, abs=1e-3)


def test_conditional_generator_depends_on_labels_only_through_its_batch_norms() -> None:
    g = ResNetGenerator(latent_dim=8, image_shape=(1, 28, 28), width=8, num_classes=3).eval()
    z, a, b = torch.randn(2, 8), torch.tensor([0, 0]), torch.tensor([1, 2])
    assert torch.equal(g(z, a), g(z, b))  # per-class gains start at 1 and biases at 0, as in the reference code
    for m in g.modules():
        if isinstance(m, ConditionalBatchNorm2d):
            nn.init.normal_(m.gain.weight, 1.0, 0.5)
            nn.init.normal_(m.bias.weight, 0.0, 0.5)
    assert torch.equal(g(z, a), g(z, a.clone()))
    assert not torch.allclose(g(z, a), g(z, b), atol=1e-4)
    # in eval mode each image sees only its own label
    assert torch.allclose(g(z, a)[0], g(z, torch.tensor([0, 1]))[0], atol=1e-6)


def test_projection_term_is_the_embedding_dot_features() -> None:
    d = ResNetDiscriminator(image_shape=(3, 32, 32), width=8, num_classes=4).eval()
    x, a, b = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 3]), torch.tensor([2, 2, 1])
    h = x
    for block in d.blocks:
        h = block(h)
    phi = torch.relu(h).sum((2, 3))
    embed = d.embed.weight  # spectrally normalised rows
    assert torch.allclose(d(x, a), d.linear(phi).squeeze(1) + (embed[a] * phi).sum(1), atol=1e-4)
    assert torch.allclose(d(x, a) - d(x, b), ((embed[a] - embed[b]) * phi).sum(1), atol=1e-4)


def test_unconditional_nets_have_no_embeddings() -> None:
    assert ResNetDiscriminator(width=4).embed is None
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in ResNetGenerator(width=4).modules())


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (None, "class-conditional.*no labels"),
        (torch.tensor([0, 3]), r"in \[0, 3\]; labels must lie in \[0, 3\)"),
        (torch.tensor([-1, 0]), r"labels must lie in \[0, 3\)"),
        (torch.tensor([0, 1], dtype=torch.int32), "int64.*labels.long"),
        (torch.tensor([0.0, 1.0]), "int64"),
        (torch.tensor([[0], [1]]), r"shape \(2,\)"),
    ],
)
def test_bad_labels_for_conditional_nets(labels: torch.Tensor | None, match: str) -> None:
    g = ResNetGenerator(latent_dim=4, image_shape=(1, 8, 8), width=4, num_classes=3)
    d = ResNetDiscriminator(image_shape=(1, 8, 8), width=4, num_classes=3)
    with pytest.raises(ValueError, match=match):
        g(torch.randn(2, 4), labels)
    with pytest.raises(ValueError, match=match):
        d(torch.randn(2, 1, 8, 8), labels)


def test_labels_for_unconditional_nets_are_refused() -> None:
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="unconditional.*num_classes=K"):
        ResNetGenerator(latent_dim=4, image_shape=(1, 8, 8), width=4)(torch.randn(2, 4), labels)
    with pytest.raises(ValueError, match="unconditional.*do not pass labels"):
        ResNetDiscriminator(image_shape=(1, 8, 8), width=4)(torch.randn(2, 1, 8, 8), labels)


def test_bad_image_shapes() -> None:
    with pytest.raises(ValueError, match="ResNetGenerator needs square images"):
        ResNetGenerator(image_shape=(3, 32, 16))
    with pytest.raises(ValueError, match="ResNetDiscriminator needs square images"):
        ResNetDiscriminator(image_shape=(3, 16, 32))
    with pytest.raises(ValueError, match="even image side above 7"):
        ResNetDiscriminator(image_shape=(3, 7, 7))


def test_importing_resnet_does_not_import_lightning() -> None:
    code = (
        "import sys, lit_gen.nets.resnet; "
        "print([m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
