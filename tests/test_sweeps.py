"""The shipped W&B sweeps: valid, flat keys, runs that the real CLI parses into the sampled hyperparameters, a metric
the modules log, and one run executed as ``wandb agent`` would execute it (offline)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lit_gen.cli import LitGenCLI
from tests.wandb_offline import offline_runs, read_run

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
         "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0"]  # fmt: skip

spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "scripts" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(sweep)  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the sweeps' commands name configs relative to the repository root


def test_there_are_the_three_sweeps() -> None:
    assert [p.stem for p in SWEEPS] == ["gan_grid2d", "gan_mnist_bayes", "vae_beta_grid"]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_is_valid_with_flat_keys_and_a_block_command(path: Path) -> None:
    import sweeps

    config = yaml.safe_load(path.read_text())
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert {"program", "method", "metric", "parameters", "command"} <= set(config)
    assert all(k.startswith(("model.", "trainer.", "data.")) and "parameters" not in v
               for k, v in config["parameters"].items())  # fmt: skip
    command = config["command"]
    assert isinstance(command, list) and command[:4] == ["${env}", "${interpreter}", "-m", "lit_gen"]
    assert "${args_json_file}" in command or "${args}" in command
    assert sweep.load_sweep(path) == config


def test_nested_parameters_are_refused(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs/sweeps/vae_beta_grid.yaml").read_text())
    config["parameters"] = {"model": {"parameters": {"beta": {"values": [1.0, 2.0]}}}}
    (tmp_path / "nested.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="use flat dotted keys"):
        sweep.load_sweep(tmp_path / "nested.yaml")


@pytest.mark.parametrize(("name", "count"), [("vae_beta_grid", 7), ("gan_grid2d", 6)])
def test_grid_sweeps_enumerate_every_combination(name: str, count: int) -> None:
    config = sweep.load_sweep(ROOT / "configs" / "sweeps" / f"{name}.yaml")
    runs = sweep.sample_runs(config, 100)
    assert len(runs) == count == math.prod(len(v.get("values", [None])) for v in config["parameters"].values())
    assert len({json.dumps(r, sort_keys=True) for r in runs}) == count


def sampled(path: Path, n: int = 3) -> list[dict[str, Any]]:
    return sweep.sample_runs(sweep.load_sweep(path), n, seed=1)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_agent_arguments_reach_the_module_as_sampled(path: Path, tmp_path: Path) -> None:
    config = sweep.load_sweep(path)
    for i, params in enumerate(sampled(path)):
        command = sweep.agent_command(config, params, tmp_path / f"config-{i}.json")
        assert command[:4] == ["/usr/bin/env", "python", "-m", "lit_gen"]
        assert json.loads((tmp_path / f"config-{i}.json").read_text()) == params
        assert sweep.check_run(command, params) == [], params


def test_the_check_sees_a_value_that_did_not_arrive(tmp_path: Path) -> None:
    config = sweep.load_sweep(ROOT / "configs/sweeps/vae_beta_grid.yaml")
    command = sweep.agent_command(config, {"model.init_args.beta": 0.5}, tmp_path / "c.json")
    assert sweep.check_run(command, {"model.init_args.beta": 0.25}) == [
        "model.init_args.beta: sampled 0.25, the CLI made 0.5"
    ]


def test_args_macro_gives_flags_the_cli_accepts(tmp_path: Path) -> None:
    config = sweep.load_sweep(ROOT / "configs/sweeps/gan_mnist_bayes.yaml")
    config["command"] = ["${env}", "${interpreter}", "-m", "lit_gen", "fit", "--config", "configs/gan/mnist.yaml",
                         "${args}"]  # fmt: skip
    params = sampled(ROOT / "configs/sweeps/gan_mnist_bayes.yaml", 1)[0]
    command = sweep.agent_command(config, params, tmp_path / "unused.json")
    assert f"--model.init_args.loss={params['model.init_args.loss']}" in command
    assert not (tmp_path / "unused.json").exists()
    assert sweep.check_run(command, params) == []


def test_agent_environment_puts_this_python_first() -> None:
    env = sweep.interpreter_env({"PATH": "/usr/bin:/bin"})
    assert Path(shutil.which("python", path=env["PATH"])).resolve() == Path(sys.executable).resolve()


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_metric_is_logged_by_a_short_run(path: Path, tmp_path: Path) -> None:
    config = sweep.load_sweep(path)
    params = sampled(path, 1)[0]
    command = sweep.agent_command(config, params, tmp_path / "config.json")
    args = sweep.lit_gen_args(command) + SHORT + [f"--trainer.logger.init_args.save_dir={tmp_path}"]
    import wandb

    cli = LitGenCLI(args=args)  # WANDB_MODE=disabled in the tests: the logger writes nothing
    wandb.finish()
    value = cli.trainer.callback_metrics[config["metric"]["name"]]
    assert math.isfinite(float(value))


@pytest.mark.slow
def test_one_sweep_run_as_the_agent_runs_it_offline(tmp_path: Path) -> None:
    """The agent's command (its JSON argument file, env and `python` from PATH) for one sampled run of the GAN
    sweep, for a few steps: the offline run records the swept values and the sweep's metric."""
    path = ROOT / "configs/sweeps/gan_mnist_bayes.yaml"
    config, params = sweep.load_sweep(path), sampled(path, 1)[0]
    sweep_dir = tmp_path / "wandb" / "sweep-test"
    command = sweep.agent_command(config, params, sweep_dir / "config-run1.json")
    from wandb.sdk.lib import config_util

    param_file = sweep_dir / "config-run1.yaml"  # what the agent writes for wandb.init to read
    config_util.save_config_file_from_dict(str(param_file), {k: {"value": v} for k, v in params.items()})
    env = sweep.interpreter_env() | {"WANDB_MODE": "offline", "WANDB_SWEEP_ID": "test", "WANDB_RUN_ID": "run1",
                                     "WANDB_SWEEP_PARAM_PATH": str(param_file), "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run([*command, *SHORT, f"--trainer.logger.init_args.save_dir={tmp_path}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = offline_runs(tmp_path)
    run = read_run(run_dir)
    assert {k: run["config"][k] for k in params} == params
    assert math.isfinite(run["summary"][config["metric"]["name"]])
    assert (tmp_path / "lit-gen" / "run1" / "config.yaml").is_file()  # the config in the run's own directory
