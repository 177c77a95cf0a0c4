"""Lightning's strategies with both modules: DDP over 2 CPU processes (gloo) and bf16-mixed on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import digits, tiny_gan, tiny_vae, trainer

ROOT = Path(__file__).resolve().parents[1]


def run_ddp(config: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "lit_gen",
        "fit",
        "--config",
        config,
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=5",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.callbacks+=tests.probes.SaveRankWeights",
        f"--trainer.callbacks.out_dir={tmp_path / 'weights'}",
        *extra,
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("config", "extra"),
    [
        ("configs/gan/digits.yaml", ()),
        pytest.param(
            "configs/gan/digits.yaml",
            ("--model.n_critic=2", "--model.loss=wasserstein", "--model.gradient_penalty=10"),
            marks=pytest.mark.slow,  # ~40 s each: one DDP run stays in the default suite
        ),
        pytest.param(
            "configs/gan/digits.yaml",
            ("--model.accumulate_grad_batches=2", "--model.generator_clip_norm=1.0", "--model.ema_decay=0.9"),
            marks=pytest.mark.slow,
        ),  # the EMA too
        pytest.param("configs/vae/digits.yaml", (), marks=pytest.mark.slow),
    ],
)
def test_ddp_two_cpu_processes_keep_the_replicas_identical(config: str, extra: tuple[str, ...], tmp_path: Path) -> None:
    done = run_ddp(config, tmp_path, *extra)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "were not used in producing the loss" not in log
    rank0, rank1 = (torch.load(tmp_path / "weights" / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key  # gradients (and batch-norm statistics) were averaged
    rng0, rng1 = (torch.load(tmp_path / "weights" / f"rng{r}.pt") for r in (0, 1))
    assert not torch.equal(rng0, rng1)  # but each process drew its own noise
    ckpts = list(tmp_path.rglob("last.ckpt"))
    assert len(ckpts) == 1
    if "--model.ema_decay=0.9" in extra:  # the EMA generator is identical on both processes
        assert any(key.startswith("generator_ema.") for key in rank0)
    if "gan" in config and not extra:
        steps = 2 * 5  # 2 epochs x 5 batches per process
        assert rank0["generator_steps"].item() == steps and rank0["images_seen"].item() == steps * 64 * 2


@pytest.mark.parametrize("make", [tiny_gan, tiny_vae])
def test_bf16_mixed_on_cpu(make, tmp_path: Path) -> None:
    module = make()
    before = [p.detach().clone() for p in module.parameters()]
    dm = digits(value_range=(0.0, 1.0))
    t = trainer(tmp_path, precision="bf16-mixed", limit_train_batches=3)
    t.fit(module, datamodule=dm)
    assert all(torch.isfinite(v) for k, v in t.callback_metrics.items() if k.startswith("train/"))
    assert all(p.dtype == torch.float32 for p in module.parameters())  # weights stay 32-bit
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize(
    ("subcommand", "config", "keys"),
    [
        ("test", "configs/vae/digits.yaml", ("kl", "mse", "psnr")),  # ~35 s each: one stays in the default suite
        pytest.param("validate", "configs/vae/digits.yaml", ("kl", "mse", "psnr"), marks=pytest.mark.slow),
        pytest.param("test", "configs/gan/digits.yaml", ("d_real",), marks=pytest.mark.slow),
        pytest.param("validate", "configs/gan/digits.yaml", ("d_real",), marks=pytest.mark.slow),
    ],
)
def test_ddp_evaluation_matches_one_process(
    subcommand: str, config: str, keys: tuple[str, ...], tmp_path: Path
) -> None:
    """Metrics that do not depend on sampled noise are the same on 2 processes as on 1 (sync_dist averaging)."""
    from lit_gen.cli import LitGenCLI

    fit = ["fit", "--config", config, "--trainer.max_steps=4", "--trainer.limit_val_batches=0",
           f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.enable_progress_bar=false"]  # fmt: skip
    fitted = LitGenCLI(args=fit)
    ckpt = Path(fitted.trainer.log_dir) / "checkpoints" / "last.ckpt"
    stage = "val" if subcommand == "validate" else "test"
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"metrics{devices}.json"
        command = [
            sys.executable, "-m", "lit_gen", subcommand, "--config", config, f"--ckpt_path={ckpt}",
            f"--trainer.devices={devices}", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.callbacks+=tests.probes.SaveMetrics",
            f"--trainer.callbacks.path={out}", *(["--trainer.strategy=ddp"] if devices == 2 else []),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        results[devices] = json.loads(out.read_text())
    for key in keys if stage == "test" else keys[:1]:  # reconstruction metrics exist at test time only
        assert results[1][f"{stage}/{key}"] == pytest.approx(results[2][f"{stage}/{key}"], rel=1e-5), key
