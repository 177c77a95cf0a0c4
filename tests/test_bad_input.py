"""Bad input gets an error that names the problem and the fix, and nothing already on disk is lost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import StochasticWeightAveraging

from lit_gen import GANModule, VAEModule
from lit_gen.cli import LitGenCLI
from lit_gen.modules.trainer_checks import ManualOptimizationConfigError
from tests.helpers import digits, tiny_gan, tiny_vae, trainer

ROOT = Path(__file__).resolve().parents[1]
GAN_DIGITS = str(ROOT / "configs/gan/digits.yaml")
VAE_DIGITS = str(ROOT / "configs/vae/digits.yaml")


def cli(*args: str) -> LitGenCLI:
    return LitGenCLI(args=list(args))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    paths = {}
    for name, module, value_range in (("gan", tiny_gan(), (-1.0, 1.0)), ("vae", tiny_vae(), (0.0, 1.0))):
        t = trainer(root, limit_train_batches=1, limit_val_batches=0)
        t.fit(module, datamodule=digits(value_range=value_range))
        paths[name] = root / f"{name}.ckpt"
        t.save_checkpoint(paths[name])
    data = paths["gan"].read_bytes()
    paths["truncated"] = root / "truncated.ckpt"
    paths["truncated"].write_bytes(data[: len(data) // 2])
    return paths


def test_truncated_checkpoint(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"truncated\.ckpt \(\d+ bytes\) is truncated or not a PyTorch checkpoint"):
        GANModule.load_from_checkpoint(checkpoints["truncated"])


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VAEModule.load_from_checkpoint(tmp_path / "nope.ckpt")


def test_checkpoint_of_another_model_class(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="holds a lit_gen.modules.vae.VAEModule, not a GANModule.*VAEModule.load_from"):
        GANModule.load_from_checkpoint(checkpoints["vae"])


def test_cli_refuses_a_truncated_checkpoint_before_doing_anything(checkpoints, capsys) -> None:
    with pytest.raises(SystemExit):
        cli("test", "--config", GAN_DIGITS, f"--ckpt_path={checkpoints['truncated']}")
    assert "is truncated or not a PyTorch checkpoint" in capsys.readouterr().err


def test_cli_loads_checkpoints_weights_only(tmp_path: Path) -> None:
    done = cli("fit", "--config", GAN_DIGITS, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}")
    assert done.config.fit.weights_only is True


@pytest.mark.parametrize(
    ("arg", "named"),
    [("--model.init_args.n_critc=2", "n_critc"), ("--model.n_critic=two", "n_critic"),
     ("--data.init_args.batch_sise=8", "batch_sise")],
)  # fmt: skip
def test_config_with_an_unknown_key_or_a_wrong_type(arg: str, named: str, capsys) -> None:
    with pytest.raises(SystemExit):
        cli("fit", "--config", GAN_DIGITS, arg)
    assert named in capsys.readouterr().err


def one_error_line(capsys: pytest.CaptureFixture[str], exit_info: pytest.ExceptionInfo[SystemExit]) -> str:
    """The single ``error:`` line of a parser error (exit code 2), with no traceback or Namespace dump around it."""
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "Traceback" not in err and "Namespace(" not in err and "Given value" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    return line


@pytest.mark.parametrize(
    ("config", "arg", "message"),
    [(GAN_DIGITS, "--data.batch_size=0", "DigitsDataModule: batch_size must be >= 1, got 0"),
     (GAN_DIGITS, "--model.init_args.n_critic=0", "GANModule: n_critic must be >= 1, got 0"),
     (GAN_DIGITS, "--model.init_args.latent_dim=17",
      "GANModule: latent_dim=17 but the generator takes z of size 32; set them equal"),
     (VAE_DIGITS, "--model.init_args.beta=-1", "VAEModule: beta must be >= 0, got -1.0")],
)  # fmt: skip
def test_bad_values_in_the_config(config: str, arg: str, message: str, capsys) -> None:
    """A value that a class's __init__ refuses is one `error:` line naming the class and the argument."""
    with pytest.raises(SystemExit) as exit_info:
        cli("fit", "--config", config, arg, "--trainer.fast_dev_run=true")
    assert one_error_line(capsys, exit_info).startswith(f"error: {message}")


def test_cli_refuses_a_checkpoint_of_another_model_class(checkpoints, capsys) -> None:
    """LightningCLI would replace the config's GANModule by the checkpoint's VAEModule and fail on the data."""
    with pytest.raises(SystemExit) as exit_info:
        cli("test", "--config", GAN_DIGITS, f"--ckpt_path={checkpoints['vae']}")
    line = one_error_line(capsys, exit_info)
    assert "holds a lit_gen.modules.vae.VAEModule, not a GANModule: load it with VAEModule.load_from" in line


@pytest.mark.parametrize(
    ("args", "names"),
    [(["--trainer.gradient_clip_val=0.5"],
      ["GANModule(generator_clip_norm=0.5, discriminator_clip_norm=0.5)", "--model.init_args.generator_clip_norm"]),
     (["--trainer.accumulate_grad_batches=4"],
      ["GANModule(accumulate_grad_batches=4)", "--model.init_args.accumulate_grad_batches=4"]),
     (["--trainer.callbacks+=lightning.pytorch.callbacks.StochasticWeightAveraging",
       "--trainer.callbacks.swa_lrs=0.01"], ["GANModule(ema_decay=0.999)", "--model.init_args.ema_decay"])],
)  # fmt: skip
def test_cli_names_the_gan_options_lightning_refuses_under_manual_optimization(args, names, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli("fit", "--config", GAN_DIGITS, *args, f"--trainer.logger.init_args.save_dir={tmp_path}")
    line = one_error_line(capsys, exit_info)
    assert all(name in line for name in names)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"gradient_clip_val": 1.0}, "GANModule(generator_clip_norm=1.0, discriminator_clip_norm=1.0)"),
     ({"accumulate_grad_batches": 2}, "GANModule(accumulate_grad_batches=2)"),
     ({"callbacks": [StochasticWeightAveraging(swa_lrs=0.01)]}, "GANModule(ema_decay=0.999)")],
)  # fmt: skip
def test_python_users_get_the_gan_option_too(kwargs, name, tmp_path) -> None:
    with pytest.raises(ManualOptimizationConfigError, match=re.escape(name)):
        trainer(tmp_path, **kwargs).fit(tiny_gan(), datamodule=digits())


def test_predict_into_a_directory_with_results_keeps_them(tmp_path: Path) -> None:
    fitted = cli(
        "fit", "--config", GAN_DIGITS, "--trainer.max_steps=2", f"--trainer.logger.init_args.save_dir={tmp_path}"
    )
    ckpt = Path(fitted.trainer.log_dir) / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    out.mkdir()
    (out / "mine.png").write_bytes(b"precious")
    args = ["predict", "--config", GAN_DIGITS, f"--ckpt_path={ckpt}", f"--predict_writer.output_dir={out}",
            f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.limit_predict_batches=2"]  # fmt: skip
    with pytest.raises(FileExistsError, match=r"already holds 1 files.*--predict_writer.overwrite=true"):
        cli(*args)
    assert sorted(p.name for p in out.iterdir()) == ["mine.png"] and (out / "mine.png").read_bytes() == b"precious"
    cli(*args, "--predict_writer.overwrite=true")
    assert len(list((out / "samples").glob("*.png"))) == 2 * 64 and (out / "mine.png").read_bytes() == b"precious"
