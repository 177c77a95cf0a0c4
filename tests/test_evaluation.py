"""The modules compute the metrics in ``trainer.test``, the CLI prints them, and DDP sync gives one process's values."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lit_gen import GANModule, ImageQuality, MixtureDataModule, MixtureQuality
from lit_gen.metrics import ClassCoverage, ModeCoverage, mixture_modes
from lit_gen.nets import MLPDiscriminator, MLPGenerator
from tests.helpers import digits, tiny_gan, tiny_vae, trainer

ROOT = Path(__file__).resolve().parents[1]
IMAGE_KEYS = {"fd", "kid", "kid_std", "precision", "recall", "density", "coverage", "classes", "class_kl", "confident"}


def test_gan_test_logs_image_quality(tmp_path: Path) -> None:
    module = tiny_gan(evaluation=ImageQuality(kid_subset_size=50))
    t = trainer(tmp_path)
    results = t.test(module, datamodule=digits(), verbose=False)[0]
    assert {f"test/{k}" for k in IMAGE_KEYS} <= set(results)
    assert results["test/fd"] > 0 and 0 <= results["test/precision"] <= 1 and 1 <= results["test/classes"] <= 10
    # the classifier is neither saved in the GAN's checkpoint nor trained by its optimizers
    assert module.state_dict().keys() == tiny_gan().state_dict().keys()
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in tiny_gan().parameters())


def test_vae_test_logs_likelihood_and_reconstruction(tmp_path: Path) -> None:
    module = tiny_vae(importance_samples=20, evaluation=ImageQuality(kid_subset_size=50))
    t = trainer(tmp_path)
    results = t.test(module, datamodule=digits(value_range=(0.0, 1.0)), verbose=False)[0]
    assert {"test/nll", "test/bpd", "test/mse", "test/psnr", "test/elbo", "test/fd"} <= set(results)
    assert results["test/nll"] <= -results["test/elbo"] + 1.0  # the IWAE bound is no looser than the ELBO
    assert results["test/bpd"] == pytest.approx(results["test/nll"] / (64 * 0.6931471805599453), rel=1e-4)
    assert results["test/psnr"] == pytest.approx(-10 * torch.tensor(results["test/mse"]).log10().item(), rel=0.2)
    assert not any(n.startswith("test_metrics") for n in module.state_dict())


def test_vae_without_importance_samples_skips_nll(tmp_path: Path) -> None:
    results = trainer(tmp_path).test(tiny_vae(importance_samples=0), datamodule=digits((0.0, 1.0)), verbose=False)[0]
    assert "test/nll" not in results and "test/psnr" in results


def test_mixture_data_and_mode_scores(tmp_path: Path) -> None:
    dm = MixtureDataModule(mixture="grid", num_train=512, num_val=64, num_test=300, batch_size=64, seed=3)
    dm.setup()
    points, labels = next(iter(dm.train_dataloader()))
    assert points.shape == (64, 2) and points.dtype == torch.float32 and labels.max() < 25
    again = MixtureDataModule(mixture="grid", num_train=512, num_val=64, num_test=300, batch_size=64, seed=3)
    again.setup()
    assert torch.equal(dm.splits["test"].tensors[0], again.splits["test"].tensors[0])  # the seed fixes the data
    module = GANModule(
        generator=MLPGenerator(2, (2,), (16,), "none"), discriminator=MLPDiscriminator((2,), (16,)),
        evaluation=MixtureQuality("grid"),
    )  # fmt: skip
    t = trainer(tmp_path, limit_train_batches=2)
    t.fit(module, datamodule=dm)
    results = t.test(module, datamodule=dm, verbose=False)[0]
    assert {"test/modes", "test/high_quality", "test/reverse_kl"} <= set(results)
    assert 0 <= results["test/modes"] <= 25


def test_unknown_mixture() -> None:
    with pytest.raises(ValueError, match="unknown mixture 'spiral'"):
        MixtureDataModule(mixture="spiral")  # type: ignore[arg-type]


def _sync_worker(rank: int, port: int, out: str) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        results = shard_metrics(rank, 2)
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def shard_metrics(rank: int, world: int) -> dict[str, torch.Tensor]:
    """Every metric updated with this process's share of one fixed data set."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(240, 1, 1, 3, generator=g), 0.5 + torch.randn(240, 1, 1, 3, generator=g)
    logits, labels = torch.randn(240, 10, generator=g), torch.randint(10, (240,), generator=g)
    points = mixture_modes("grid")[0].float().repeat(10, 1)[:240] + 0.1 * torch.randn(240, 2, generator=g)
    quality = ImageQuality(feature=nn.Flatten(), value_range=(0.0, 1.0), kid_subset_size=240)
    classes, modes = ClassCoverage(), ModeCoverage("grid")
    for batch in range(rank, 6, world):  # six batches of 40, dealt out to the processes
        part = slice(40 * batch, 40 * batch + 40)
        quality.update(real[part], fake[part])
        classes.update(logits[part], labels[part])
        modes.update(points[part])
    return quality.compute() | classes.compute() | modes.compute()


def test_metrics_on_two_processes_equal_one_process(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.start_processes(_sync_worker, args=(port, str(out)), nprocs=2, start_method="spawn")
    two, one = torch.load(out), shard_metrics(0, 1)
    assert two.keys() == one.keys()
    for key in one:  # kid_std: every KID subset is the whole set here, so it is rounding noise around 0
        torch.testing.assert_close(two[key], one[key], rtol=1e-6, atol=1e-6 if key == "kid_std" else 1e-9, msg=key)
