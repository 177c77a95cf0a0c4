from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lit_gen import GANModule, VAEModule
from lit_gen.cli import LitGenCLI

ROOT = Path(__file__).resolve().parents[1]
# complete experiment configs; configs/logger/ holds partial configs added after one, configs/sweeps/ W&B sweeps
CONFIGS = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name not in ("logger", "sweeps")
)
FAST = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
]


def run_cli(*args: str) -> LitGenCLI:
    return LitGenCLI(args=list(args))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_parses(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(ROOT / config), "--print_config")
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed_everything"] == 0 and printed["model"]["class_path"].startswith("lit_gen.")


@pytest.mark.parametrize(
    "config",
    [
        "configs/gan/digits.yaml",
        "configs/gan/mnist.yaml",  # the demo's config; the other 28×28 ones take ~30-40 s each and are marked slow
        pytest.param("configs/gan/cond_mnist.yaml", marks=pytest.mark.slow),
        pytest.param("configs/gan/wgan_gp.yaml", marks=pytest.mark.slow),
        pytest.param("configs/gan/sngan.yaml", marks=pytest.mark.slow),
        "configs/vae/digits.yaml",
        pytest.param("configs/vae/mnist.yaml", marks=pytest.mark.slow),
    ],
)
def test_fit_test_predict_from_the_checkpoint(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--config", str(ROOT / config), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = run_cli("fit", *common, *FAST)
    run = Path(cli.trainer.log_dir)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run / "config.yaml").is_file()
    assert len(list((run / "samples").glob("*.png"))) == 1
    assert f"checkpoint  {ckpt}" in capsys.readouterr().out

    validated = run_cli("validate", *common, f"--ckpt_path={ckpt}", "--trainer.limit_val_batches=2")
    assert any(k.startswith("val/") for k in validated.trainer.callback_metrics)

    # `last` is resolved to this run's last.ckpt (Lightning alone would test the untrained model)
    tested = run_cli("test", *common, "--ckpt_path=last", "--trainer.limit_test_batches=2",
                     "--trainer.enable_progress_bar=false")  # fmt: skip
    assert tested.config.test.ckpt_path == str(ckpt)
    metrics = tested.trainer.callback_metrics
    keys = (
        {"test/d_loss", "test/g_loss", "test/d_real", "test/d_fake"}
        if "gan" in config
        else {"test/loss", "test/recon", "test/kl", "test/elbo", "test/nll", "test/bpd", "test/mse", "test/psnr"}
    )
    keys |= {"test/fd", "test/kid", "test/precision", "test/recall", "test/coverage", "test/classes"}
    assert keys <= set(metrics) and all(torch.isfinite(metrics[k]) for k in keys)
    assert "test/fd" in capsys.readouterr().out  # printed in the results table

    out = tmp_path / "predictions"
    run_cli(
        "predict",
        *common,
        f"--ckpt_path={ckpt}",
        f"--predict_writer.output_dir={out}",
        "--trainer.limit_predict_batches=2",
        "--trainer.enable_progress_bar=false",
    )
    kinds = ["samples"] if "gan" in config else ["inputs", "reconstructions", "samples"]
    batch = yaml.safe_load((ROOT / config).read_text())["data"]["init_args"]["batch_size"]
    for kind in kinds:
        assert len(list((out / kind).glob("*.png"))) == 2 * batch
        assert (out / f"{kind}_grid.png").is_file()


@pytest.mark.parametrize("mixture", ["ring", "grid", "pacgan"])
def test_2d_configs_fit_and_report_modes(mixture: str, tmp_path: Path) -> None:
    common = ["--config", str(ROOT / f"configs/gan/{mixture}.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    run_cli("fit", *common, *FAST)
    tested = run_cli("test", *common, "--ckpt_path=last", "--trainer.enable_progress_bar=false")
    metrics = tested.trainer.callback_metrics
    assert {"test/modes", "test/high_quality", "test/reverse_kl"} <= set(metrics)


def write_cifar10(root: Path, per_file: int = 20) -> None:
    """A CIFAR-10 copy in torchvision's format (cifar-10-batches-py/: pickled dicts of uint8 rows of 3×32×32)."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": torch.randint(0, 256, (per_file, 3072), generator=g, dtype=torch.uint8).numpy(),
                 "labels": torch.randint(0, 10, (per_file,), generator=g).tolist(), "batch_label": name,
                 "filenames": [f"{name}_{i}.png" for i in range(per_file)]}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))


@pytest.mark.parametrize(
    "config", ["configs/gan/cifar10_dcgan.yaml", pytest.param("configs/gan/cifar10_sngan.yaml", marks=pytest.mark.slow)]
)
def test_cifar10_configs_train_on_files_in_torchvisions_format(
    config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar as cifar

    write_cifar10(tmp_path / "data")
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # our files are not the real md5s
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    cli = run_cli("fit", "--config", str(ROOT / config), f"--trainer.logger.init_args.save_dir={tmp_path}",
                  f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.batch_size=8",
                  "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", *FAST[:1], *FAST[3:])  # fmt: skip
    assert cli.datamodule.image_shape == (3, 32, 32) and len(cli.datamodule.splits["test"]) == 20
    assert cli.model.generator_steps.item() == 2  # (an integer 1 would mean 100 %)
    assert (Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt").is_file()


def test_test_without_a_checkpoint_warns(tmp_path: Path) -> None:
    common = ["--config", str(ROOT / "configs/gan/digits.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    with pytest.warns(UserWarning, match="without --ckpt_path evaluates the freshly initialised model"):
        run_cli("validate", *common, "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false")


@pytest.mark.parametrize(
    ("config", "cls"), [("configs/gan/digits.yaml", GANModule), ("configs/vae/digits.yaml", VAEModule)]
)
def test_cli_checkpoint_reloads_from_its_path_alone(config: str, cls: type, tmp_path: Path) -> None:
    cli = run_cli("fit", "--config", str(ROOT / config), f"--trainer.logger.init_args.save_dir={tmp_path}", *FAST)
    loaded = cls.load_from_checkpoint(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    samples = [m.sample(5, rng=torch.Generator().manual_seed(3)) for m in (cli.model, loaded)]
    assert torch.equal(*samples)


def test_overrides_reach_the_module(tmp_path: Path) -> None:
    cli = run_cli(
        "fit",
        "--config",
        str(ROOT / "configs/gan/digits.yaml"),
        "--model.loss=hinge",
        "--model.init_args.n_critic=2",
        "--data.batch_size=8",
        "--model.generator.init_args.latent_dim=7",
        "--trainer.fast_dev_run=true",
        f"--trainer.default_root_dir={tmp_path}",
    )
    assert cli.model.hparams.loss == "hinge" and cli.model.n_critic == 2 and cli.model.latent_dim == 7
    assert cli.datamodule.batch_size == 8


def test_unknown_loss_name_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli("fit", "--config", str(ROOT / "configs/gan/digits.yaml"), "--model.loss=wgan")
    err = capsys.readouterr().err
    assert "wgan" in err and "non_saturating" in err


@pytest.mark.parametrize("command", [["lit-gen"], [sys.executable, "-m", "lit_gen"]])
def test_entry_points(command: list[str]) -> None:
    if command == ["lit-gen"]:
        command = [str(Path(sys.executable).with_name("lit-gen"))]
    out = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0
    assert all(sub in out.stdout for sub in ("fit", "validate", "test", "predict"))


def test_default_root_dir_holds_the_run_and_last_is_found_there(tmp_path: Path, monkeypatch) -> None:
    """The shipped configs' CSVLogger writes to the relative `runs/`: under --trainer.default_root_dir=DIR that is
    DIR/runs, and `--ckpt_path last` searches there."""
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    common = ["--config", str(ROOT / "configs/vae/digits.yaml"), f"--trainer.default_root_dir={root}"]
    cli = run_cli("fit", *common, "--trainer.max_steps=2", "--trainer.limit_val_batches=0",
                  "--trainer.enable_progress_bar=false")  # fmt: skip
    run = root / "runs" / "vae-digits" / "version_0"
    assert Path(cli.trainer.log_dir) == run
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    assert list(cwd.iterdir()) == []  # nothing in the working directory
    tested = run_cli("test", *common, "--ckpt_path=last", "--trainer.limit_test_batches=1",
                     "--model.init_args.evaluation=null", "--trainer.enable_progress_bar=false")  # fmt: skip
    assert tested.config.test.ckpt_path == str(run / "checkpoints" / "last.ckpt")
    assert list(cwd.iterdir()) == []


def test_default_root_dir_places_relative_logger_dirs_only_once() -> None:
    from jsonargparse import Namespace

    from lit_gen.cli import place_logs_under_root_dir

    def logger(save_dir: str | None) -> Namespace:
        return Namespace(class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir=save_dir))

    trainer = Namespace(default_root_dir="out", logger=[logger("runs"), logger("/abs/runs"), logger("out/runs")])
    place_logs_under_root_dir(trainer)
    # relative: under DIR; absolute: kept; already under DIR (a saved config.yaml run again): kept
    assert [lg.init_args.save_dir for lg in trainer.logger] == ["out/runs", "/abs/runs", "out/runs"]
    unset = Namespace(default_root_dir=None, logger=logger("runs"))
    place_logs_under_root_dir(unset)
    assert unset.logger.init_args.save_dir == "runs"
