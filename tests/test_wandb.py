"""wandb as the first-class logger, offline (no W&B server here): the full config in the run's config, clear metric
names, image grids, checkpoints as artifacts, no prompt without an account, no hang without a network, DDP."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from lit_gen.callbacks.wandb_run import flat_config, start_wandb_runs
from lit_gen.cli import LitGenCLI
from tests.helpers import digits, tiny_gan, trainer
from tests.wandb_offline import finished_records, offline_runs, read_run

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1",
         "--trainer.enable_progress_bar=false"]  # fmt: skip
WANDB = ["fit", "--config", "configs/gan/digits.yaml", "--config", "configs/logger/wandb.yaml"]


@pytest.fixture
def wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """An isolated wandb: offline, HOME/config in tmp_path (no credentials), fresh settings before and after."""
    import wandb

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb.finish()  # a run an earlier test left (Lightning never finishes one)
    wandb.teardown()  # wandb reads its environment once per process
    yield monkeypatch
    wandb.finish()
    wandb.teardown()


def test_cli_records_the_full_config_and_each_run_keeps_its_own(wandb_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import wandb

    for n_critic in (1, 2):  # two runs in one directory, as a sweep makes them
        save_dir = f"--trainer.logger.init_args.save_dir={tmp_path}"
        LitGenCLI(args=[*WANDB, *SHORT, "--trainer.log_every_n_steps=1", save_dir, f"--model.n_critic={n_critic}"])
        wandb.finish()
    configs = sorted((tmp_path / "lit-gen").glob("*/config.yaml"), key=lambda p: p.stat().st_mtime)
    assert [yaml.safe_load(p.read_text())["model"]["init_args"]["n_critic"] for p in configs] == [1, 2]
    assert not (tmp_path / "config.yaml").exists()  # not in the save_dir both runs share
    runs = offline_runs(tmp_path)
    assert {r.name.rsplit("-", 1)[1] for r in runs} == {p.parent.name for p in configs}  # run dir = run id
    for run_dir, config_file, n_critic in zip(sorted(runs, key=lambda r: r.name), configs, (1, 2), strict=True):
        run = read_run(run_dir)
        saved = flat_config(yaml.safe_load(config_file.read_text()))
        recorded = {k: run["config"][k] for k in saved}  # every key of the saved config, flat and dotted
        assert recorded == json.loads(json.dumps(saved)) and recorded["model.init_args.n_critic"] == n_critic
        metrics = {k for row in run["history"] for k in row if not k.startswith("_")}
        assert {"train/d_loss", "train/g_loss", "val/d_loss", "images/samples"} <= metrics
        assert all(k.split("/")[0] in ("train", "val", "images", "trainer") or k == "epoch" for k in metrics)


def test_no_api_key_goes_offline_instead_of_prompting(wandb_env: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    wandb_env.delenv("WANDB_MODE")  # online, but HOME holds no credentials
    t = trainer(tmp_path, logger=WandbLogger(save_dir=tmp_path, project="test"))
    start_wandb_runs(t)  # wandb.init alone would raise "No API key configured" here, or prompt in a terminal
    assert t.logger.experiment.settings.mode == "offline"
    assert "no W&B API key is configured" in capsys.readouterr().out
    assert os.environ["WANDB_MODE"] == "offline"  # for the processes it starts (DDP)


def test_checkpoints_become_artifacts_when_asked(wandb_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import wandb

    logger = WandbLogger(save_dir=tmp_path, project="test", log_model="all")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)  # one file per epoch
    t = trainer(tmp_path, max_epochs=2, limit_train_batches=2, logger=logger, enable_checkpointing=True,
                callbacks=[ckpt])  # fmt: skip
    t.fit(tiny_gan(), datamodule=digits())
    wandb.finish()
    (run_dir,) = offline_runs(tmp_path)
    (path,) = run_dir.glob("run-*.wandb")
    artifacts = [r.artifact for r in finished_records(path) if r.WhichOneof("record_type") == "artifact"]
    assert len(artifacts) == 2 and all(a.type == "model" for a in artifacts)  # one per epoch's checkpoint
    assert [m.path for m in artifacts[0].manifest.contents] == ["model.ckpt"]


def run_in_terminal(command: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Run ``command`` with a pseudo-terminal as stdin/stdout/stderr (where wandb would prompt); kill it after
    ``timeout`` seconds. Returns (exit code or None when killed, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    os.close(master)
    return (None if time.monotonic() >= deadline else proc.returncode), output.decode(errors="replace")


@pytest.mark.slow
def test_cli_in_a_terminal_without_an_account_neither_prompts_nor_hangs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_gen", *WANDB, *SHORT, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    code, output = run_in_terminal(command, env, timeout=240)
    assert code == 0, output[-3000:]
    assert "no W&B API key is configured" in output and len(offline_runs(tmp_path)) == 1


@pytest.mark.slow
def test_unreachable_server_falls_back_to_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    # a made-up key and a closed local port: nothing outside this machine is contacted
    env |= {"HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "WANDB_API_KEY": "a" * 40, "WANDB_INIT_TIMEOUT": "5",
            "WANDB_BASE_URL": "http://127.0.0.1:9"}  # fmt: skip
    command = [sys.executable, "-m", "lit_gen", *WANDB, *SHORT, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the W&B server cannot be reached" in done.stdout and len(offline_runs(tmp_path)) == 1


@pytest.mark.slow
def test_ddp_ranks_get_the_swept_values_and_only_rank_0_logs_images(tmp_path: Path) -> None:
    """A sweep-style run (values in a JSON file on the command line, as `${args_json_file}`) on 2 DDP processes:
    both ranks build the module with the swept values (wandb.config exists on rank 0 only), one wandb run holds
    them, and the image callbacks make their grids on rank 0 only."""
    swept = {"model.init_args.n_critic": 2, "model.init_args.generator_optimizer.init_args.lr": 0.0007,
             "model.init_args.evaluate_every_n_epochs": 1}  # fmt: skip
    (tmp_path / "args.json").write_text(json.dumps(swept))
    command = [
        sys.executable, "-m", "lit_gen", *WANDB, "--config", str(tmp_path / "args.json"),
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.callbacks+=tests.sweep_probes.SaveRankHparams", f"--trainer.callbacks.out_dir={tmp_path}",
        "--trainer.callbacks+=tests.sweep_probes.RankTaggedGrid", f"--trainer.callbacks.out_dir={tmp_path}",
        "--trainer.callbacks.png=true", "--trainer.callbacks+=lit_gen.callbacks.Interpolations",
    ]  # fmt: skip
    env = os.environ | {"WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    for rank in (0, 1):
        hparams = json.loads((tmp_path / f"hparams{rank}.json").read_text())
        assert {k: hparams[k] for k in swept} == swept, rank
    assert (tmp_path / "grids.txt").read_text().split() == ["0", "0"]  # two epochs, rank 0 only
    (run_dir,) = offline_runs(tmp_path)  # one wandb run for the two processes
    run = read_run(run_dir)
    assert {k: run["config"][k] for k in swept} == swept
    assert "val/fd" in run["summary"]  # the sample metrics at validation time, synced over the 2 processes
    images = [k for row in run["history"] for k in row if k.startswith("images/")]
    # the probe's 2 grids and the config's SampleGrid (every 20 epochs and at the last)
    assert sorted(images) == ["images/interpolations"] * 2 + ["images/samples"] * 3
    assert len(list((tmp_path / "lit-gen").glob("*/samples/epoch=*.png"))) == 2  # png=true: the probe's files


def test_ckpt_path_last_finds_the_wandb_run_and_continues_it(wandb_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import wandb

    common = [*WANDB, *SHORT, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    first = LitGenCLI(args=common)
    wandb.finish()
    run_id = first.trainer.logger.version
    again = LitGenCLI(args=[*common, "--trainer.max_epochs=2", "--ckpt_path=last"])
    wandb.finish()
    assert again.trainer.logger.version == run_id  # the same W&B run id, so the same run directory
    assert again.trainer.current_epoch == 2 and again.trainer.ckpt_path.endswith(f"{run_id}/checkpoints/last.ckpt")
