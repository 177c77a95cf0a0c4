"""The correctness half of ``scripts/bench_speed.py``: its plain PyTorch loops (``scripts/plain_loops.py``) do what
GANModule and VAEModule do, so the same weights, noise and batches give the same losses and metrics.

Tiny DCGAN and conv VAE nets on the 8×8 digits, built from the shipped MNIST configs with overrides, on CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_speed  # noqa: E402
from plain_loops import Batches  # noqa: E402

DIGITS = ["--data=lit_gen.data.DigitsDataModule", "--data.batch_size=16"]
TINY = {
    "gan": [
        *DIGITS,
        "--model.generator.init_args.image_shape=[1,8,8]",
        "--model.generator.init_args.width=8",
        "--model.generator.init_args.latent_dim=8",
        "--model.discriminator.init_args.image_shape=[1,8,8]",
        "--model.discriminator.init_args.width=8",
    ],
    "vae": [
        *DIGITS,
        "--data.value_range=[0,1]",
        "--model.encoder.init_args.image_shape=[1,8,8]",
        "--model.encoder.init_args.width=8",
        "--model.encoder.init_args.latent_dim=4",
        "--model.decoder.init_args.image_shape=[1,8,8]",
        "--model.decoder.init_args.width=8",
        "--model.decoder.init_args.latent_dim=4",
        "--model.importance_samples=4",
    ],
}


def context(kind: str, tmp_path: Path, *extra: str) -> Any:
    args = bench_speed.parse_args(["--models", kind, "--check-steps", "6", *(f"--override={o}" for o in TINY[kind])])
    args.override += list(extra)
    args.tmp, args.eval_rounds = str(tmp_path), 0
    return bench_speed.Context(kind, args)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("gan", ()), ("gan", ("--model.n_critic=2", "--model.loss=minimax")), ("vae", ("--model.beta=0.5",))],
)
def test_plain_loop_reaches_the_modules_losses_and_weights(kind: str, extra: tuple[str, ...], tmp_path: Path) -> None:
    check = bench_speed.section_check(context(kind, tmp_path, *extra))
    assert len(check["lit_gen"]) == len(check["plain"]) == 6
    assert torch.tensor(check["lit_gen"]).isfinite().all()
    assert check["max_rel_diff"] <= 1e-6
    assert check["weights_max_abs_diff"] <= 1e-6


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_plain_evaluation_gives_the_numbers_of_validate_and_test(kind: str, tmp_path: Path) -> None:
    results = bench_speed.section_eval(context(kind, tmp_path))
    val, test = results["validate"], results["test"]
    assert len(val["compared"]) == 4
    # losses, and for the test split the Fréchet distance, precision/recall, class coverage (VAE: also NLL, PSNR)
    assert {"fd", "precision", "recall", "classes"} <= set(test["compared"])
    if kind == "vae":
        assert {"nll", "bpd", "mse", "psnr", "rate"} <= set(test["compared"])
    assert val["max_rel_diff"] <= 1e-5 and test["max_rel_diff"] <= 1e-5
    assert test["fd_torchmetrics"] == pytest.approx(test["lit_gen"]["fd"], rel=1e-6)


def test_a_plain_loop_that_differs_from_the_module_is_caught(tmp_path: Path) -> None:
    ctx = context("gan", tmp_path, "--model.n_critic=2")
    original = bench_speed.Twin.__init__

    def one_critic_step(self: Any, *args: Any) -> None:
        original(self, *args)
        self.plain.n_critic = 1  # the module makes two discriminator steps per batch

    bench_speed.Twin.__init__ = one_critic_step  # type: ignore[method-assign]
    try:
        check = bench_speed.section_check(ctx)
    finally:
        bench_speed.Twin.__init__ = original  # type: ignore[method-assign]
    assert check["max_rel_diff"] > 1e-3


def test_plain_batches_follow_the_datamodules_shuffling(tmp_path: Path) -> None:
    dm = context("gan", tmp_path).dm
    images, _ = bench_speed.split_tensors(dm, "train")
    plain = Batches(images, dm.batch_size, torch.device("cpu"), dm.value_range, seed=dm.seed)
    loader = dm.train_dataloader()
    for epoch in (0, 3):
        loader.sampler.set_epoch(epoch)  # what Lightning calls at the start of every epoch
        ours = list(plain.epoch(epoch))
        theirs = [dm.on_after_batch_transfer(batch, 0)[0] for batch in loader]
        assert len(ours) == len(theirs) == len(images) // dm.batch_size
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_options_the_plain_loops_lack_are_refused(tmp_path: Path) -> None:
    ctx = context("gan", tmp_path, "--model.gradient_penalty=10", "--model.ema_decay=0.99")
    with pytest.raises(ValueError, match=r"does not implement \['gradient_penalty', 'ema_decay'\]"):
        ctx.bare()
