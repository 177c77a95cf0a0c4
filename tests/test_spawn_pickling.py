"""Nets with spectral normalization pickle (``strategy="ddp_spawn"`` sends the module to new processes)."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lit_gen.nets import DCGANDiscriminator, MLPDiscriminator, ResNetDiscriminator

ROOT = Path(__file__).resolve().parents[1]

NETS = {
    "mlp": lambda: MLPDiscriminator((1, 8, 8), hidden=(16, 16), spectral_norm=True, num_classes=3),
    "dcgan": lambda: DCGANDiscriminator((1, 16, 16), width=4, norm="none", spectral_norm=True, num_classes=3),
    "resnet": lambda: ResNetDiscriminator((3, 16, 16), width=8, num_classes=3),
}


def run(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return net(x, y)


@pytest.mark.parametrize("name", sorted(NETS))
def test_spectral_norm_nets_round_trip_through_pickle(name: str) -> None:
    torch.manual_seed(0)
    net = NETS[name]()
    shape = net.image_shape
    x, y = torch.randn(4, *shape), torch.tensor([0, 1, 2, 0])
    run(net, x, y)  # one power iteration in train mode: u and v differ from their initial values
    rng_state = torch.get_rng_state()
    clone = pickle.loads(pickle.dumps(net))
    assert torch.equal(torch.get_rng_state(), rng_state)  # rebuilding draws nothing from the global RNG
    normed = [n for n, m in clone.named_modules() if parametrize.is_parametrized(m, "weight")]
    assert normed and normed == [n for n, m in net.named_modules() if parametrize.is_parametrized(m, "weight")]
    assert type(clone) is type(net) and clone.state_dict().keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value), key
    torch.testing.assert_close(run(clone, x, y), run(net, x, y), rtol=0, atol=0)  # train mode: another iteration
    net.eval(), clone.eval()
    torch.testing.assert_close(run(clone, x, y), run(net, x, y), rtol=0, atol=0)
    # deepcopy (EMA, SWA) still works and gives the same net
    torch.testing.assert_close(run(copy.deepcopy(net), x, y), run(net, x, y), rtol=0, atol=0)


def test_a_net_without_spectral_norm_pickles_as_before() -> None:
    net = MLPDiscriminator((1, 8, 8), hidden=(16,))
    clone = pickle.loads(pickle.dumps(net))
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(clone(x), net(x), rtol=0, atol=0)


@pytest.mark.slow  # ~30 s: two spawned processes start, import torch and Lightning, and train 4 steps
def test_ddp_spawn_trains_a_spectral_norm_gan(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "lit_gen", "fit", "--config", str(ROOT / "configs/gan/digits.yaml"),
               "--model.init_args.discriminator.init_args.spectral_norm=true", "--model.init_args.ema_decay=0.9",
               "--trainer.strategy=ddp_spawn",
               "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_steps=4",
               "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
               f"--trainer.logger.init_args.save_dir={tmp_path}"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (ckpt,) = tmp_path.rglob("last.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.endswith("parametrizations.weight.original") for k in state)


def test_a_gan_module_with_a_spectral_norm_discriminator_pickles() -> None:
    """What ddp_spawn sends to each process: the whole LightningModule, its generator EMA included."""
    from lit_gen import GANModule
    from lit_gen.nets import MLPGenerator

    torch.manual_seed(0)
    discriminator = MLPDiscriminator((1, 8, 8), hidden=(16,), spectral_norm=True)
    module = GANModule(generator=MLPGenerator(4, (1, 8, 8), (16,)), discriminator=discriminator, ema_decay=0.9)
    clone = pickle.loads(pickle.dumps(module))
    x = torch.randn(3, 1, 8, 8)
    module.eval(), clone.eval()
    torch.testing.assert_close(clone.discriminator(x), module.discriminator(x), rtol=0, atol=0)
    z = torch.randn(3, 4)
    torch.testing.assert_close(clone.generator_ema(z), module.generator_ema(z), rtol=0, atol=0)  # EMA: no closure
    assert clone.state_dict().keys() == module.state_dict().keys()


class TorchSpectralNormDiscriminator(nn.Module):
    """A user's net with torch's spectral norm applied directly: it cannot be pickled."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 8, 8), hidden: tuple[int, ...] = (16,)) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = nn.utils.parametrizations.spectral_norm(nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def test_cli_names_ddp_when_spawn_cannot_pickle_the_module(tmp_path: Path, capsys) -> None:
    from lit_gen.cli import LitGenCLI

    args = ["fit", "--config", str(ROOT / "configs/gan/digits.yaml"),
            "--model.init_args.discriminator.class_path=tests.test_spawn_pickling.TorchSpectralNormDiscriminator",
            "--trainer.strategy=ddp_spawn", "--trainer.devices=2", "--trainer.accelerator=cpu",
            f"--trainer.logger.init_args.save_dir={tmp_path}"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        LitGenCLI(args=args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "GANModule cannot be pickled (RuntimeError: Serialization of parametrized modules" in line
    assert "use Trainer(strategy='ddp') (--trainer.strategy=ddp)" in line
