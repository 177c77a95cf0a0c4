"""Lightning's learning-rate finder: it sets the autoencoders' ``lr`` and the following fit trains with it; the GAN
refuses it with a message that names the optimizer arguments to set."""

from __future__ import annotations

import functools

import pytest
import torch
from lightning.pytorch.callbacks import LearningRateFinder
from lightning.pytorch.tuner import Tuner

from lit_gen import GANModule, VAEModule, VQVAEModule
from tests.helpers import digits, tiny_gan, tiny_vae, trainer
from tests.test_compression import tiny_vqvae

SEARCH = dict(min_lr=1e-5, max_lr=1.0, num_training=20)


def test_tuner_lr_find_sets_the_vae_lr_and_the_next_fit_trains_with_it(tmp_path) -> None:
    module = tiny_vae(optimizer=functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.9)))
    assert module.lr is None and module.hparams["lr"] is None
    dm = digits(value_range=(0.0, 1.0))
    t = trainer(tmp_path, limit_train_batches=25)
    found = Tuner(t).lr_find(module, datamodule=dm, **SEARCH)
    suggestion = found.suggestion()
    assert suggestion is not None and suggestion != 1e-3
    assert module.lr == suggestion and module.hparams["lr"] == suggestion
    t.fit(module, datamodule=dm)
    (optimizer,) = t.optimizers
    assert [g["lr"] for g in optimizer.param_groups] == [suggestion]
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.9)  # the rest of the callable is kept
    t.save_checkpoint(tmp_path / "vae.ckpt")
    assert VAEModule.load_from_checkpoint(tmp_path / "vae.ckpt").lr == suggestion


def test_the_lr_finder_callback_sets_the_vqvae_lr_and_its_schedule(tmp_path) -> None:
    module = tiny_vqvae(lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=100))
    finder = LearningRateFinder(min_lr=1e-5, max_lr=1.0, num_training_steps=20)
    t = trainer(tmp_path, limit_train_batches=25, callbacks=[finder])
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    suggestion = finder.optimal_lr.suggestion()
    assert suggestion is not None and module.lr == suggestion
    (optimizer,) = t.optimizers
    assert optimizer.param_groups[0]["lr"] == suggestion == optimizer.param_groups[0]["initial_lr"]
    assert t.lr_scheduler_configs[0].scheduler.base_lrs == [suggestion]


def test_lr_overrides_the_optimizer_callables_rate_for_every_group() -> None:
    module = VQVAEModule(lr=0.05, optimizer=torch.optim.SGD)
    optimizer = module.configure_optimizers()
    assert type(optimizer) is torch.optim.SGD and [g["lr"] for g in optimizer.param_groups] == [0.05]
    with pytest.raises(ValueError, match=r"VAEModule\(lr=...\) must be > 0"):
        VAEModule(lr=0.0)


def test_the_cli_takes_model_lr_and_the_lr_finder_callback(tmp_path) -> None:
    from tests.test_cli import FAST, ROOT, run_cli

    config = ["--config", str(ROOT / "configs/vae/digits.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = run_cli("fit", *config, *FAST, "--model.lr=0.0123")
    assert cli.model.lr == 0.0123 and cli.trainer.optimizers[0].param_groups[0]["lr"] == 0.0123
    finder = [
        "--trainer.callbacks+=LearningRateFinder",
        "--trainer.callbacks.num_training_steps=20",
        "--trainer.limit_train_batches=25",
    ]
    cli = run_cli("fit", *config, *FAST, *finder)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, LearningRateFinder)]
    suggestion = callback.optimal_lr.suggestion()
    assert suggestion is not None and suggestion != 1e-3
    assert cli.model.lr == suggestion and cli.trainer.optimizers[0].param_groups[0]["lr"] == suggestion


@pytest.mark.parametrize("how", ["tuner", "callback"])
def test_the_gan_refuses_the_lr_finder_naming_its_optimizer_arguments(how: str, tmp_path) -> None:
    module = tiny_gan()
    message = r"GANModule\(generator_optimizer=\.\.\., discriminator_optimizer=\.\.\.\).*TTUR"
    with pytest.raises(ValueError, match=message):
        if how == "tuner":
            Tuner(trainer(tmp_path)).lr_find(module, datamodule=digits())
        else:
            trainer(tmp_path, callbacks=[LearningRateFinder()]).fit(module, datamodule=digits())
    assert isinstance(module, GANModule)
