"""Shared pieces of the benchmark scripts: building a run from a shipped config, timing, and result files."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def build(config: str, *overrides: str) -> Any:
    """Model, DataModule and Trainer of a shipped config, as ``lit-gen fit --config ...`` would build them, with no
    logger, checkpoints or callbacks (a benchmark measures, it keeps nothing)."""
    from lit_gen.cli import LitGenCLI

    args = ["--config", config, "--trainer.logger=false", "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", *overrides]  # fmt: skip
    return LitGenCLI(args=args, run=False, save_config_callback=None)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {platform.system()}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def write_results(out: Path, results: dict[str, Any], table: str, command: str, started: float) -> None:
    """``results.json`` and ``table.md`` (the table with the command, machine and wall time under it)."""
    out.mkdir(parents=True, exist_ok=True)
    wall = time.time() - started
    meta = {"command": command, "machine": machine(), "commit": git_commit(), "wall_seconds": round(wall, 1)}
    (out / "results.json").write_text(json.dumps(meta | results, indent=2) + "\n")
    footer = f"\n`{command}` · {meta['machine']} · commit {meta['commit']} · wall time {wall / 60:.1f} min\n"
    (out / "table.md").write_text(table + footer)
    print(table + footer)
