"""Exact resume: a `lit-gen fit` killed with SIGKILL mid-epoch and resumed with `--ckpt_path last` ends with the same
weights, optimizer states and counters as an uninterrupted run, bit for bit (CPU, fixed seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def command(config: str, save_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lit_gen", "fit", "--config", config, "--trainer.max_epochs=3",
        "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={save_dir}", *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def final_state(save_dir: Path) -> dict:
    (path,) = save_dir.rglob("last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    ("config", "extra"),
    [
        pytest.param("configs/gan/digits.yaml", (), marks=pytest.mark.slow),  # ~35 s each: the next one stays
        (  # the EMA, lazy R1, annealed instance noise and per-step schedules resume too
            "configs/gan/digits.yaml",
            (
                "--model.ema_decay=0.99",
                "--model.ema_warmup=10",
                "--model.r1_gamma=0.1",
                "--model.d_reg_interval=4",
                "--model.instance_noise=0.1",
                "--model.instance_noise_steps=60",
                "--model.scheduler_interval=step",
                "--model.generator_scheduler=torch.optim.lr_scheduler.LinearLR",
                "--model.generator_scheduler.init_args.end_factor=0.1",
                "--model.generator_scheduler.init_args.total_iters=100",
            ),
        ),
        pytest.param("configs/vae/digits.yaml", (), marks=pytest.mark.slow),
    ],
)
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(config: str, extra: tuple, tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(command(config, straight, *extra), cwd=ROOT, env=env(), check=True, capture_output=True, timeout=300)

    # The configs checkpoint every 50 steps; the probe hangs one batch after step 50 (mid-epoch), once last.ckpt
    # holds step 50, and the run is SIGKILLed there.
    marker = tmp_path / "hanging"
    hang = ["--trainer.callbacks+=tests.probes.Slow", "--trainer.callbacks.hang_at_step=51",
            f"--trainer.callbacks.marker={marker}"]  # fmt: skip
    run = subprocess.Popen(command(config, killed, *extra, *hang), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it reached step 51"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    interrupted = final_state(killed)
    assert interrupted["global_step"] == 50  # it died mid-epoch, after the step-50 checkpoint
    assert interrupted["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] not in (0, 22)

    resume = command(config, killed, *extra, "--ckpt_path=last")
    resumed = subprocess.run(resume, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(list(killed.glob("*/version_*"))) == 1  # the resumed run continued in the killed run's directory
    a, b = final_state(straight), final_state(killed)
    assert a["global_step"] == b["global_step"] > 50
    assert_same(a["state_dict"], b["state_dict"], "state_dict")
    assert_same(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    if extra:
        assert b["state_dict"]["generator_ema.n_averaged"].item() == b["state_dict"]["generator_steps"].item()


def test_ckpt_path_last_without_any_checkpoint_is_an_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lit_gen", "fit", "--config", "configs/gan/digits.yaml", "--ckpt_path=last",
         f"--trainer.logger.init_args.save_dir={tmp_path}"],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "--ckpt_path last: no checkpoint matches" in done.stderr and "start without --ckpt_path" in done.stderr
