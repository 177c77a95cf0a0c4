from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from lit_gen.nets import ResNetDecoder, ResNetEncoder
from lit_gen.nets.resnet import DownBlock, UpBlock


def n_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("side", "base", "stages"), [(8, 4, 1), (28, 7, 2), (32, 4, 3), (64, 4, 4)])
def test_shapes(channels: int, side: int, base: int, stages: int) -> None:
    torch.manual_seed(0)
    shape = (channels, side, side)
    enc = ResNetEncoder(shape, latent_dim=3, width=2, blocks_per_stage=1)
    dec = ResNetDecoder(3, shape, width=2, blocks_per_stage=1)
    assert enc.image_shape == dec.image_shape == shape and enc.latent_dim == dec.latent_dim == 3
    assert enc.num_classes == dec.num_classes == 0 and dec.out_channels == channels
    assert len(enc.blocks) == len(dec.blocks) == stages
    top = enc.blocks(torch.rand(2, *shape))
    assert top.shape == (2, 2 * 2 ** (stages - 1), base, base)  # the width doubles at each halving
    mu, logvar = enc(torch.rand(2, *shape))
    assert mu.shape == logvar.shape == (2, 3)
    assert dec(mu).shape == (2, *shape)


def test_blocks_per_stage_adds_same_size_blocks_mirrored() -> None:
    enc = ResNetEncoder((1, 28, 28), latent_dim=3, width=2, blocks_per_stage=3)
    dec = ResNetDecoder(3, (1, 28, 28), width=2, blocks_per_stage=3)
    down = [type(b).__name__ + ("↓" if b.downsample else "") for b in enc.blocks]
    up = [type(b).__name__ + ("" if isinstance(b, UpBlock) else ("↓" if b.downsample else "")) for b in dec.blocks]
    assert down == ["DownBlock↓", "DownBlock", "DownBlock"] * 2
    assert up == ["DownBlock", "DownBlock", "UpBlock"] * 2
    assert all(b.bn2 is not None for b in [*enc.blocks, *dec.blocks] if isinstance(b, DownBlock))
    z = enc(torch.rand(2, 1, 28, 28))[0]
    assert dec(z).shape == (2, 1, 28, 28)


def test_default_sizes() -> None:
    n28 = n_params(ResNetEncoder(), ResNetDecoder())
    n32 = n_params(ResNetEncoder((3, 32, 32)), ResNetDecoder(image_shape=(3, 32, 32)))
    assert 1.4e6 < n28 < 1.6e6 and 5.0e6 < n32 < 5.3e6  # the figures the module docstring gives


def test_out_channels_doubles_the_decoder_output_for_a_discretized_logistic() -> None:
    dec = ResNetDecoder(4, (3, 8, 8), width=2, out_channels=6, blocks_per_stage=1)
    assert dec.out_channels == 6 and dec.image_shape == (3, 8, 8)
    assert dec.out.out_channels == 6
    loc, log_scale = dec(torch.randn(5, 4)).chunk(2, dim=1)
    assert loc.shape == log_scale.shape == (5, 3, 8, 8)


def test_conditional_outputs_depend_on_the_label_of_each_example() -> None:
    torch.manual_seed(0)
    enc = ResNetEncoder((1, 8, 8), latent_dim=3, width=2, num_classes=4, blocks_per_stage=1).eval()
    dec = ResNetDecoder(3, (1, 8, 8), width=2, num_classes=4, blocks_per_stage=1).eval()
    x, z = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1), torch.randn(1, 3).repeat(2, 1)
    labels = torch.tensor([0, 3])
    mu, logvar = enc(x, labels)
    recon = dec(z, labels)
    assert not torch.allclose(mu[0], mu[1], atol=1e-4) and not torch.allclose(logvar[0], logvar[1], atol=1e-4)
    assert not torch.allclose(recon[0], recon[1], atol=1e-4)
    # eval mode: each example sees its own label only
    assert torch.allclose(enc(x, torch.tensor([3, 3]))[0][1], mu[1], atol=1e-6)
    assert torch.allclose(dec(z, torch.tensor([2, 3]))[1], recon[1], atol=1e-6)


@pytest.mark.parametrize(
    ("num_classes", "labels", "match"),
    [
        (4, None, "ResNet(En|De)coder is class-conditional.*no labels"),
        (0, torch.tensor([0, 1]), r"ResNet(En|De)coder is unconditional \(num_classes=0\) but got labels"),
        (4, torch.tensor([0, 4]), r"labels must lie in \[0, 4\)"),
        (4, torch.tensor([0, 1], dtype=torch.int32), "int64.*labels.long"),
    ],
)
def test_bad_labels_are_refused(num_classes: int, labels: Tensor | None, match: str) -> None:
    enc = ResNetEncoder((1, 8, 8), latent_dim=3, width=2, num_classes=num_classes, blocks_per_stage=1)
    dec = ResNetDecoder(3, (1, 8, 8), width=2, num_classes=num_classes, blocks_per_stage=1)
    with pytest.raises(ValueError, match=match.replace("(En|De)", "En")):
        enc(torch.rand(2, 1, 8, 8), labels)
    with pytest.raises(ValueError, match=match.replace("(En|De)", "De")):
        dec(torch.randn(2, 3), labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_shape": (1, 28, 32)}, "needs square images"),
        ({"image_shape": (1, 7, 7)}, "even image side above 7"),
        ({"num_classes": -1}, "num_classes must be 0"),
        ({"blocks_per_stage": 0}, "blocks_per_stage must be at least 1"),
        ({"width": 0}, "width >= 1"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ResNetEncoder(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        ResNetDecoder(**kwargs)  # type: ignore[arg-type]
    if "image_shape" not in kwargs:
        with pytest.raises(ValueError, match="out_channels must be positive"):
            ResNetDecoder(out_channels=0)


@pytest.mark.parametrize("num_classes", [0, 3])
def test_reconstruction_loss_reaches_every_parameter(num_classes: int) -> None:
    torch.manual_seed(0)
    enc = ResNetEncoder((3, 16, 16), latent_dim=4, width=2, num_classes=num_classes)  # 2 stages of 2 blocks
    dec = ResNetDecoder(4, (3, 16, 16), width=2, num_classes=num_classes)
    x = torch.rand(4, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 0]) if num_classes else None
    mu, logvar = enc(x, labels)
    F.binary_cross_entropy_with_logits(dec(reparameterize(mu, logvar), labels), x).backward()
    params = [*enc.named_parameters(), *dec.named_parameters()]
    # 1e-6 is far below every real gradient here (1e-4 and up) and far above the rounding noise (~1e-9) that a bias
    # in front of a batch norm would get
    missing = [name for name, p in params if p.grad is None or not p.grad.abs().max() > 1e-6]
    assert missing == [] and len(params) > 40
    convs = [m for m in [*enc.blocks.modules(), *dec.blocks.modules()] if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and all(c.bias is None for c in convs)  # 8 blocks of 2 convs, 4 shortcuts


def test_a_few_adam_steps_on_real_digits_reduce_the_negative_elbo() -> None:
    torch.manual_seed(0)
    x = torch.as_tensor(load_digits().images[:64], dtype=torch.float32).unsqueeze(1) / 16.0  # (64, 1, 8, 8) in [0, 1]
    enc = ResNetEncoder((1, 8, 8), latent_dim=4, width=4, blocks_per_stage=1)
    dec = ResNetDecoder(4, (1, 8, 8), width=4, blocks_per_stage=1)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-2)
    losses = []
    for _ in range(20):
        mu, logvar = enc(x)
        bce = F.binary_cross_entropy_with_logits(dec(reparameterize(mu, logvar)), x, reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = bce + kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = losses[0], sum(losses[-5:]) / 5
    assert first > 44  # at initialisation: 64 pixels of BCE near or above log 2 nats each (44 in all), plus the KL
    assert last < 0.7 * first, (first, last)
