"""The correctness half of ``scripts/bench_speed.py``: its plain PyTorch loops (``scripts/plain_loops.py``) do what
GANModule and VAEModule do, so the same weights, noise and batches give the same losses and metrics.

Tiny DCGAN and conv VAE nets on the 8×8 digits, built from the shipped MNIST configs with overrides, on CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_speed  # noqa: E402
from bench_common import build  # noqa: E402
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


def build_tiny(kind: str, *extra: str) -> Any:
    """A bare run of the shipped config with the tiny nets, on CPU in fp32."""
    return build(bench_speed.CONFIGS[kind], *TINY[kind], "--trainer.accelerator=cpu", *extra)


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


# -- the precision section: FLOPs, matmul limits, the CPU's flags ----------------------------------------------------
class TwoLayers(L.LightningModule):
    """Linear(8→16), ReLU, Linear(16→4), squared output as the loss: FLOPs countable by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.net(batch[0]).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_iteration_flops_of_an_mlp_match_the_count_by_hand() -> None:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, max_epochs=5)  # fmt: skip
    loader = DataLoader(TensorDataset(torch.randn(64, 8)), batch_size=16)  # 4 batches: one is counted
    flops = bench_speed.iteration_flops(trainer, TwoLayers(), train_dataloaders=loader)
    batch = 16
    forward = 2 * batch * (8 * 16 + 16 * 4)
    # backward: weight gradients of both layers, the input gradient of the second only (the data needs none)
    backward = 2 * batch * (8 * 16 + 16 * 4) + 2 * batch * 16 * 4
    assert flops == forward + backward == 14_336


def test_gan_iteration_flops_grow_with_the_batch_and_count_every_discriminator_step(tmp_path: Path) -> None:
    def flops(*extra: str) -> int:
        cli = build_tiny("gan", "--trainer.num_sanity_val_steps=0", *extra)
        return bench_speed.iteration_flops(cli.trainer, cli.model, datamodule=cli.datamodule)

    one, double_batch, two_critic = flops(), flops("--data.batch_size=32"), flops("--model.n_critic=2")
    # linear in the batch, up to batch-independent work (the spectral norm's power iteration)
    assert double_batch == pytest.approx(2 * one, rel=0.02) and double_batch != 2 * one
    assert one < two_critic < 2 * one  # a second D step on a new batch: less than a whole D + G iteration


def test_matmul_limit_counts_two_n_cubed_per_product_and_keeps_the_best_trial() -> None:
    ticks = iter([0.0, 2.0, 10.0, 11.0, 20.0, 24.0])  # trials of 2 s, 1 s and 4 s
    gflops = bench_speed.matmul_limit(torch.float32, size=64, repeats=3, trials=3, clock=lambda: next(ticks))
    assert gflops == pytest.approx(2 * 64**3 * 3 / 1.0 / 1e9)
    for dtype in (torch.float32, torch.bfloat16):  # a real measurement: finite and positive
        assert 0 < bench_speed.matmul_limit(dtype, size=128, repeats=1, trials=1) < 1e6


def test_every_figure_names_the_cpu_and_its_matrix_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    core = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    info.write_text(f"processor\t: 0\n{core}\nprocessor\t: 1\n{core}")
    cpu = bench_speed.cpu_info(info)
    assert cpu["model"] == "AMD EPYC 9R14"
    assert cpu["flags"] == ["avx2", "avx512f", "avx512_bf16"]
    assert {"amx_bf16", "amx_tile"} <= set(cpu["lacks"])
    line = bench_speed.hardware("cpu", cpu)
    assert line.startswith("AMD EPYC 9R14,") and "flags: avx2 avx512f avx512_bf16 (no " in line
    assert "amx_bf16" in line.split("(no ")[1]


def test_precision_section_reports_images_gflops_and_fractions_of_the_limits(tmp_path: Path) -> None:
    short = ["--rounds", "2", "--limit", "2", "--matmul-size", "128", "--precision-batch-sizes", "16"]
    args = bench_speed.parse_args(["--models", "gan", *short, *(f"--override={o}" for o in TINY["gan"])])
    args.tmp = str(tmp_path)
    assert args.precision_variants == ["32-true", "bf16-mixed+cl"]  # the CPU default
    out = bench_speed.section_precision(bench_speed.Context("gan", args))
    assert set(out["limits_gflops"]) == {"fp32", "bf16"}
    rows = out["rows"]
    assert [(r["batch_size"], r["variant"]) for r in rows] == [(16, "32-true"), (16, "bf16-mixed+cl")]
    for r in rows:
        assert len(r["images_per_s"]) == 2 and r["batches_per_round"] == 2
        per_image = r["gflop_per_iteration"] / 16
        assert r["gflops_median"] == pytest.approx(per_image * r["images_per_s_median"])
        for name, limit in out["limits_gflops"].items():
            assert r["fraction_of_limit"][name] == pytest.approx(r["gflops_median"] / limit)
    results = {"hardware": bench_speed.hardware(), "gan": {"precision": out}}
    table = "\n".join(bench_speed.precision_table(results, args))
    assert bench_speed.cpu_info()["model"] in table and "% of bf16 limit" in table
    assert "| DCGAN | 16 | bf16-mixed+cl |" in table
