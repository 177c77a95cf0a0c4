"""Models built in Python or by Hydra (net objects, ``functools.partial`` optimizers) reload from the checkpoint path
alone, or ask for the nets that cannot be rebuilt by name; never with silently built default nets."""

from __future__ import annotations

import copy
import functools
import pickle
from collections import UserList
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lit_gen import GANModule, VAEModule, VQVAEModule
from lit_gen.modules.recorded_objects import UNRECORDED_KEY, record_argument
from lit_gen.nets import (
    DCGANGenerator,
    MLPDecoder,
    MLPDiscriminator,
    MLPGenerator,
    VectorQuantizer,
    VQDecoder,
    VQEncoder,
)
from lit_gen.nets.init_args import recorded_init_args
from tests.helpers import digits, trainer


class UserEncoder(nn.Module):
    """A user's encoder that keeps its arguments as attributes: recoverable from the net alone."""

    def __init__(self, latent_dim: int = 2, hidden: int = 8, side: int = 8) -> None:
        super().__init__()
        self.latent_dim, self.hidden, self.side = latent_dim, hidden, side
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(side * side, hidden), nn.ReLU())
        self.mu, self.logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class OpaqueGenerator(nn.Module):
    """A user's generator that does not keep its ``width``: its arguments cannot be recovered soundly."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.latent_dim, self.image_shape = 4, (1, 8, 8)
        self.net = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 64), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, 1, 8, 8)


class ScaledGenerator(OpaqueGenerator):
    """Keeps an attribute of its argument's name, but not its value: the rebuilt net would differ."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.width = 2 * width


def hydra_adam(lr: float) -> functools.partial:
    """What ``hydra.utils.instantiate({"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr, ...})`` gives:
    its lists arrive as OmegaConf ``ListConfig`` s, a ``Sequence`` that is not a list (here a ``UserList``)."""
    return functools.partial(torch.optim.Adam, lr=lr, betas=UserList([0.5, 0.9]))


def fit_and_save(module: L.LightningModule, tmp_path: Path, **data: Any) -> Path:
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, **(data or {"datamodule": digits(value_range=(0.0, 1.0))}))
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    return path


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def optimizer_settings(module: L.LightningModule) -> list[tuple[type, float, tuple[float, ...]]]:
    configured = module.configure_optimizers()
    optimizers = configured if isinstance(configured, (list, tuple)) else [configured]
    optimizers = [o["optimizer"] if isinstance(o, dict) else o for o in optimizers]
    return [(type(o), o.param_groups[0]["lr"], tuple(o.param_groups[0]["betas"])) for o in optimizers]


def test_gan_built_in_python_with_partial_optimizers_reloads_from_its_path(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = GANModule(
        generator=MLPGenerator(latent_dim=4, image_shape=UserList([1, 8, 8]), hidden=UserList([16])),
        discriminator=MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)),
        generator_optimizer=hydra_adam(1e-3),
        discriminator_optimizer=hydra_adam(4e-3),
    )
    path = fit_and_save(module, tmp_path, datamodule=digits())
    loaded = GANModule.load_from_checkpoint(path)
    assert_same_weights(module, loaded)
    same = [m.sample(6, rng=torch.Generator().manual_seed(7)) for m in (module, loaded)]
    assert torch.equal(*same)
    # the two time-scale learning rates came back, not the DCGAN default 2e-4
    assert optimizer_settings(loaded) == [(torch.optim.Adam, 1e-3, (0.5, 0.9)), (torch.optim.Adam, 4e-3, (0.5, 0.9))]


def test_vae_with_a_user_net_reloads_from_its_path(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = VAEModule(
        encoder=UserEncoder(latent_dim=2, hidden=12),
        decoder=MLPDecoder(latent_dim=2, image_shape=(1, 8, 8), hidden=(16,)),
        optimizer=torch.optim.RMSprop,  # a class is an optimizer callable too
    )
    assert module.hparams["encoder"] == {
        "class_path": f"{__name__}.UserEncoder",
        "init_args": {"latent_dim": 2, "hidden": 12, "side": 8},
    }
    path = fit_and_save(module, tmp_path)
    loaded = VAEModule.load_from_checkpoint(path)
    assert isinstance(loaded.encoder, UserEncoder) and loaded.encoder.hidden == 12
    assert_same_weights(module, loaded)
    same = [m.sample(5, rng=torch.Generator().manual_seed(3)) for m in (module, loaded)]
    assert torch.equal(*same)
    assert type(loaded.configure_optimizers()) is torch.optim.RMSprop


def test_vqvae_built_in_python_reloads_from_its_path(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = VQVAEModule(
        encoder=VQEncoder((1, 8, 8), code_dim=4, width=8),
        decoder=VQDecoder(4, (1, 8, 8), width=8),
        quantizer=VectorQuantizer(num_codes=16, code_dim=4),
        optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
    )
    path = fit_and_save(module, tmp_path)
    loaded = VQVAEModule.load_from_checkpoint(path)
    assert_same_weights(module, loaded)
    x = torch.rand(3, 1, 8, 8)
    assert module.compress(x) == loaded.compress(x)
    assert torch.equal(loaded.reconstruct(x), module.reconstruct(x))
    assert loaded.configure_optimizers().param_groups[0]["lr"] == 3e-3


def test_a_net_matching_the_default_shapes_is_not_replaced_by_the_default(tmp_path) -> None:
    # a sigmoid DCGAN generator has exactly the default generator's weights: it used to reload as the tanh default
    L.seed_everything(0, verbose=False)
    module = GANModule(generator=DCGANGenerator(latent_dim=8, output_activation="sigmoid"), latent_dim=8)
    images = torch.rand(8, 1, 28, 28) * 2 - 1
    path = fit_and_save(module, tmp_path, train_dataloaders=DataLoader(TensorDataset(images), batch_size=4))
    loaded = GANModule.load_from_checkpoint(path)
    same = [m.sample(4, rng=torch.Generator().manual_seed(0)) for m in (module, loaded)]
    assert torch.equal(*same) and same[1].min() >= 0


def test_a_net_whose_arguments_cannot_be_known_is_asked_for_by_name(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = GANModule(
        generator=OpaqueGenerator(width=16), discriminator=MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,))
    )
    assert module.hparams["generator"]["class_path"] == f"{__name__}.OpaqueGenerator"
    assert "'width' is not kept" in module.hparams["generator"][UNRECORDED_KEY]
    path = fit_and_save(module, tmp_path, datamodule=digits())
    with pytest.raises(ValueError, match=r"GANModule.load_from_checkpoint\(path, generator=\.\.\.\)") as err:
        GANModule.load_from_checkpoint(path)
    assert "OpaqueGenerator whose init arguments could not be recorded" in str(err.value)
    loaded = GANModule.load_from_checkpoint(path, generator=OpaqueGenerator(width=16))
    same = [m.sample(3, rng=torch.Generator().manual_seed(1)) for m in (module, loaded)]
    assert torch.equal(*same)


def test_an_attribute_of_the_arguments_name_is_trusted_only_when_the_rebuilt_net_matches() -> None:
    recorded = record_argument(ScaledGenerator(width=8))
    assert "differs from it" in recorded[UNRECORDED_KEY]
    local = record_argument(type("Local", (UserEncoder,), {})())
    assert "not importable" in local[UNRECORDED_KEY]
    assert UNRECORDED_KEY in record_argument(lambda params: torch.optim.SGD(params, lr=0.1))


def test_checkpoints_saved_before_objects_were_recorded_ask_for_the_nets(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = GANModule(
        generator=MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,)),
        discriminator=MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)),
        generator_optimizer=hydra_adam(1e-3),
    )
    path = fit_and_save(module, tmp_path, datamodule=digits())
    old = torch.load(path, weights_only=False)
    for key in ("generator", "discriminator", "generator_optimizer", "_instantiator"):
        del old["hyper_parameters"][key]  # what object_args_to_ignore left out
    torch.save(old, path)
    with pytest.raises(ValueError, match=r"the checkpoint's generator was passed as an object .* generator=\.\.\."):
        GANModule.load_from_checkpoint(path)
    nets = {
        "generator": MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,)),
        "discriminator": MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)),
    }
    with pytest.warns(UserWarning, match="GANModule uses its default generator_optimizer"):
        loaded = GANModule.load_from_checkpoint(path, **nets)
    assert_same_weights(module, loaded)


def test_lit_gen_nets_record_their_own_arguments_not_their_base_classes() -> None:
    net = MLPDecoder(latent_dim=3, image_shape=(1, 8, 8), hidden=(16,))
    args = recorded_init_args(net)
    assert args is not None and args["latent_dim"] == 3 and args["hidden"] == (16,)
    assert set(args) == set(MLPDecoder.__init__.__code__.co_varnames[1 : MLPDecoder.__init__.__code__.co_argcount])
    for copied in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert recorded_init_args(copied) == args
    assert recorded_init_args(UserEncoder()) is None


def test_a_cli_checkpoint_reloaded_in_python_and_saved_again_reloads(tmp_path) -> None:
    from tests.test_cli import FAST, ROOT, run_cli

    config = ["--config", str(ROOT / "configs/gan/digits.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = run_cli("fit", *config, *FAST)
    loaded = GANModule.load_from_checkpoint(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    path = fit_and_save(loaded, tmp_path / "again", datamodule=cli.datamodule)  # built by jsonargparse, not the CLI
    again = GANModule.load_from_checkpoint(path)
    assert_same_weights(loaded, again)
    same = [m.sample(5, rng=torch.Generator().manual_seed(3)) for m in (loaded, again)]
    assert torch.equal(*same)


def python_gan_checkpoint(tmp_path: Path, generator: nn.Module) -> Path:
    L.seed_everything(0, verbose=False)
    module = GANModule(generator=generator, discriminator=MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)))
    return fit_and_save(module, tmp_path, datamodule=digits())


def test_the_cli_rebuilds_a_python_built_checkpoints_nets(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_cli import ROOT, run_cli

    config = ["--config", str(ROOT / "configs/gan/digits.yaml"), "--trainer.logger=false"]  # nets of 32-dim z
    config.append(f"--trainer.default_root_dir={tmp_path}")
    path = python_gan_checkpoint(tmp_path, MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,)))
    cli = run_cli("validate", *config, f"--ckpt_path={path}", "--trainer.limit_val_batches=1")
    assert cli.model.latent_dim == 4 and cli.model.generator.latent_dim == 4
    path = python_gan_checkpoint(tmp_path / "opaque", OpaqueGenerator(width=16))
    with pytest.raises(SystemExit):
        run_cli("validate", *config, f"--ckpt_path={path}")
    err = capsys.readouterr().err
    assert "its generator is a tests.test_reload.OpaqueGenerator whose init arguments could not be recorded" in err
    assert "GANModule.load_from_checkpoint(path, generator=...)" in err


def test_recording_a_user_net_leaves_the_random_stream_alone() -> None:
    net = UserEncoder(hidden=5)
    state = torch.get_rng_state()
    recorded = record_argument(net)  # rebuilt on the meta device to verify the arguments
    assert recorded["init_args"]["hidden"] == 5 and torch.equal(state, torch.get_rng_state())
