"""The VAE-family configs train from the command line as shipped, and each variant shows in what it logs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_png

from tests.test_cli import FAST, ROOT, run_cli, write_cifar10


@pytest.mark.parametrize(
    ("config", "logged"),
    [
        pytest.param("configs/vae/beta_vae_mnist.yaml", {"train/beta"}, marks=pytest.mark.slow),  # 28×28: ~25-35 s
        ("configs/vae/beta_vae_digits.yaml", {"train/beta", "train/capacity"}),
        pytest.param("configs/vae/iwae_mnist.yaml", {"train/iwae", "val/iwae"}, marks=pytest.mark.slow),
        ("configs/vae/iwae_digits.yaml", {"train/iwae", "val/iwae"}),
        pytest.param("configs/vae/cvae_mnist.yaml", set(), marks=pytest.mark.slow),
        ("configs/vae/cvae_digits.yaml", set()),
    ],
)
def test_vae_family_configs_fit_and_test(config: str, logged: set[str], tmp_path: Path) -> None:
    common = ["--config", str(ROOT / config), f"--trainer.logger.init_args.save_dir={tmp_path}"]
    cli = run_cli("fit", *common, *FAST)
    assert logged <= set(cli.trainer.callback_metrics)
    if "cvae" in config:
        assert cli.model.num_classes == 10
        (grid,) = (Path(cli.trainer.log_dir) / "samples").glob("*.png")
        side = cli.datamodule.image_shape[-1]
        assert decode_png(torch.frombuffer(bytearray(grid.read_bytes()), dtype=torch.uint8)).shape[-1] == (
            10 * (side + 2) + 2  # one class per column: 10 columns of side + 2 px padding
        )
    tested = run_cli("test", *common, "--ckpt_path=last", "--trainer.limit_test_batches=1",
                     "--model.importance_samples=4", "--trainer.enable_progress_bar=false")  # fmt: skip
    metrics = tested.trainer.callback_metrics
    assert metrics["test/rate"].item() == pytest.approx(metrics["test/kl"].item() / math.log(2), rel=1e-4)


def test_beta_vae_config_predicts_pairs_interpolations_and_traversals(tmp_path: Path) -> None:
    config = str(ROOT / "configs/vae/beta_vae_digits.yaml")
    common = ["--config", config, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    run_cli("fit", *common, *FAST)
    out = tmp_path / "predictions"
    run_cli("predict", *common, "--ckpt_path=last", f"--predict_writer.output_dir={out}",
            "--trainer.limit_predict_batches=2", "--trainer.enable_progress_bar=false")  # fmt: skip
    sizes = {}
    for kind in ("pairs", "interpolations", "traversals"):
        files = sorted((out / kind).glob("*.png"))
        assert len(files) == 2 * 64  # two batches of the config's 64
        sizes[kind] = decode_png(torch.frombuffer(bytearray(files[0].read_bytes()), dtype=torch.uint8)).shape
    assert sizes["pairs"][1:] == (8, 16)
    assert sizes["interpolations"][1:] == (8, 8 * 8)  # latent_steps 8
    assert sizes["traversals"][1:] == (8 * 8, 8 * 8)  # 8 latent dims × 8 steps


def test_cifar10_vae_config_trains_on_files_in_torchvisions_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar as cifar

    write_cifar10(tmp_path / "data")
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # our files are not the real md5s
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    cli = run_cli("fit", "--config", str(ROOT / "configs/vae/cifar10_vae.yaml"),
                  f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.init_args.root={tmp_path / 'data'}",
                  "--data.init_args.batch_size=4", "--model.encoder.init_args.width=8",
                  "--model.decoder.init_args.width=8", *FAST)  # fmt: skip
    assert cli.model.likelihood == "discretized_logistic" and cli.model.decoder.out_channels == 6
    assert cli.model._step == 2 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
