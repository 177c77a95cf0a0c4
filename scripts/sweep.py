"""W&B sweeps of lit-gen: the commands to start one, an offline dry run, and an agent launcher.

    python scripts/sweep.py commands configs/sweeps/vae_beta_grid.yaml     # the `wandb sweep` / `wandb agent` lines
    python scripts/sweep.py dry-run configs/sweeps/gan_mnist_bayes.yaml -n 3 --check   # offline, no account
    python scripts/sweep.py agent ENTITY/PROJECT/SWEEP_ID [--count N]       # `wandb agent` with this env's python

Run them from the repository root: the sweeps' commands name configs by paths relative to it. ``wandb agent``
starts every run as its sweep's ``command``, in which ``${interpreter}`` is the literal ``python`` looked up on
PATH: the agent must see the ``python`` of the environment where lit-gen is installed. Activate that environment
first, or start the agent through ``agent`` here, which puts this interpreter's directory first on PATH.

``dry-run`` samples runs with the open-source ``sweeps`` package (``pip install sweeps==0.2.0``), the algorithms
``wandb`` ran before its server-side rewrite (grid, random, Bayesian): no account, no network. It validates the
config, writes each run's JSON argument file as the agent would and prints the command; ``--check`` also parses each
command with the real CLI and compares the module's hyperparameters with the sampled values.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def import_sweeps() -> Any:
    """The open-source ``sweeps`` package, or an error that says how to install it."""
    try:
        with warnings.catch_warnings():  # sweeps 0.2.0 imports pydantic v1-style configs
            warnings.simplefilter("ignore")
            import sweeps
    except ImportError:
        raise SystemExit(
            "validating and sampling sweeps offline needs the `sweeps` package: pip install sweeps==0.2.0"
        ) from None
    return sweeps


def load_sweep(path: str | Path) -> dict[str, Any]:
    """The sweep config, checked against the sweep schema; a clear error lists what is wrong."""
    sweeps = import_sweeps()

    config = yaml.safe_load(Path(path).read_text())
    violations = sweeps.schema_violations_from_proposed_config(config)
    if violations:
        raise ValueError(f"{path} is not a valid sweep config:\n  " + "\n  ".join(violations))
    nested = [k for k, v in config["parameters"].items() if isinstance(v, dict) and "parameters" in v]
    if nested:
        raise ValueError(f"{path}: use flat dotted keys (model.init_args.x), not nested parameters: {nested}")
    return config


def plain(value: Any) -> Any:
    """numpy scalars (what ``sweeps`` samples) as Python numbers, recursively; the server sends plain JSON."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def sample_runs(config: dict[str, Any], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``n`` runs as an agent would receive them (``{param: value}``), proposed by ``sweeps.next_run``; a grid
    stops when it is exhausted. Runs are proposed as if each finished without a metric (nothing is trained)."""
    import numpy as np

    sweeps = import_sweeps()
    np.random.seed(seed)  # `sweeps` samples with numpy's global generator
    runs: list[Any] = []
    for _ in range(n):
        run = sweeps.next_run(config, runs, validate=False)
        if run is None:
            break
        run.state = sweeps.RunState.finished
        runs.append(run)
    return [{k: plain(v["value"]) for k, v in run.config.items()} for run in runs]


def agent_command(config: dict[str, Any], params: dict[str, Any], json_file: Path) -> list[str]:
    """The argument list ``wandb agent`` builds for one run of ``config`` (as ``wandb_agent.Agent._command_run`` does,
    with wandb's own macro expansion), writing the ``${args_json_file}`` it names to ``json_file``."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = sweep_utils.create_sweep_command(list(config.get("command") or []))  # ${envvar:X} filled in
    sweep_vars = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    if "${args_json_file}" in command:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(sweep_vars["args_json"][0])
    sweep_vars |= {
        "interpreter": ["python"],
        "program": [config.get("program", "")],
        "args_json_file": [str(json_file)],
        "env": ["/usr/bin/env"],
    }
    out: list[str] = []
    for chunk in map(str, command):
        if chunk.startswith("${") and chunk.endswith("}"):
            out += sweep_vars.get(chunk[2:-1]) or []  # an unknown macro vanishes, as in the agent
        else:
            out.append(chunk)
    return out


def interpreter_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) with this interpreter's directory first on PATH, so that the ``python`` the
    agent's commands name is this environment's."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def python_on_path_is_this_one() -> bool:
    found = shutil.which("python")
    return found is not None and Path(found).resolve() == Path(sys.executable).resolve()


def lit_gen_args(command: list[str]) -> list[str]:
    """The arguments after ``-m lit_gen`` (or the ``lit-gen`` script) of an agent command."""
    for i, chunk in enumerate(command):
        if chunk == "lit_gen" and i and command[i - 1] == "-m":
            return command[i + 1 :]
        if Path(chunk).name == "lit-gen":
            return command[i + 1 :]
    raise ValueError(f"the command does not run lit-gen (`python -m lit_gen` or `lit-gen`): {command}")


def check_run(command: list[str], params: dict[str, Any]) -> list[str]:
    """Parse ``command`` with the real CLI (nothing is trained) and return the parameters whose value in the
    instantiated config differs from ``params``; ``model.init_args.x`` is compared with the module's hparams."""
    from lit_gen.cli import LitGenCLI

    args = lit_gen_args(command)
    if args and args[0] in ("fit", "validate", "test", "predict"):
        args = args[1:]  # run=False parses the subcommand's arguments alone
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = LitGenCLI(args=args, run=False)
    hparams = {"model.init_args." + k: v for k, v in flatten(dict(cli.model.hparams)).items()}
    config = flatten(yaml.safe_load(cli.parser.dump(cli.config, skip_none=False)))
    wrong = []
    for key, value in params.items():
        got = hparams.get(key, config.get(key, "<missing>"))
        if key.startswith("trainer.") and hasattr(cli.trainer, key[len("trainer.") :]):
            got = getattr(cli.trainer, key[len("trainer.") :])  # the Trainer built, e.g. max_epochs
        if plain(list(got) if isinstance(got, tuple) else got) != value:
            wrong.append(f"{key}: sampled {value!r}, the CLI made {got!r}")
    return wrong


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    from lit_gen.callbacks.wandb_run import flat_config

    return flat_config(config, prefix)


def cmd_commands(args: argparse.Namespace) -> None:
    config = load_sweep(args.sweep)
    project = args.project or config.get("project") or "lit-gen"
    entity = f"{args.entity}/" if args.entity else "ENTITY/"
    metric = config["metric"]
    print(f"# {args.sweep}: {config['method']} search, metric {metric['name']} ({metric.get('goal', 'minimize')})")
    print(f"cd {ROOT}")
    print(f"wandb sweep --project {project} {args.sweep}        # prints the sweep id")
    print(f"python scripts/sweep.py agent {entity}{project}/SWEEP_ID   # or `wandb agent`, see below")
    if python_on_path_is_this_one():
        print(f"# `python` on PATH is this interpreter ({sys.executable}): plain `wandb agent` works too")
    else:
        print(
            f"# `python` on PATH is {shutil.which('python')}, not this interpreter ({sys.executable}): plain "
            "`wandb agent` would run the sweep with it. Activate this environment or use `scripts/sweep.py agent`"
        )


def cmd_dry_run(args: argparse.Namespace) -> None:
    config = load_sweep(args.sweep)
    runs = sample_runs(config, args.n, args.seed)
    print(f"# {args.sweep}: valid; {len(runs)} run(s) proposed by the `sweeps` package ({config['method']})")
    failures = 0
    for i, params in enumerate(runs):
        json_file = Path(args.out) / f"config-dry{i}.json"
        command = agent_command(config, params, json_file)
        print(f"\n## run {i}: {json.dumps(params)}\n{' '.join(command)}")
        if args.check:
            wrong = check_run(command, params)
            failures += bool(wrong)
            print("   parsed by lit-gen: " + ("every value matches" if not wrong else "; ".join(wrong)))
    if failures:
        raise SystemExit(f"{failures} run(s) did not reach the module with the sampled values")


def cmd_agent(args: argparse.Namespace) -> None:
    wandb = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
    if wandb is None:
        raise SystemExit("the `wandb` command is not installed in this environment: pip install wandb")
    argv = [wandb, "agent", args.sweep_id, *(["--count", str(args.count)] if args.count else [])]
    print(f"lit-gen: {' '.join(argv)} with {Path(sys.executable).parent} first on PATH", flush=True)
    os.execve(wandb, argv, interpreter_env())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("commands", help="print the wandb sweep / wandb agent commands for a sweep config")
    p.add_argument("sweep")
    p.add_argument("--project", help="W&B project (default: the config's `project`)")
    p.add_argument("--entity", help="W&B user or team")
    p.set_defaults(run=cmd_commands)
    p = sub.add_parser("dry-run", help="sample runs offline with the `sweeps` package and print the agent's commands")
    p.add_argument("sweep")
    p.add_argument("-n", type=int, default=5, help="runs to sample (a grid stops when exhausted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="wandb/sweep-dry-run", help="where the runs' JSON argument files go")
    p.add_argument("--check", action="store_true", help="parse each command with lit-gen and compare the values")
    p.set_defaults(run=cmd_dry_run)
    p = sub.add_parser("agent", help="run `wandb agent` with this environment's python first on PATH")
    p.add_argument("sweep_id", help="ENTITY/PROJECT/SWEEP_ID as `wandb sweep` printed it")
    p.add_argument("--count", type=int, help="runs this agent makes before it stops")
    p.set_defaults(run=cmd_agent)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
