"""Benchmark: how soon the demo (``make demo``: ``lit-gen fit --config configs/gan/mnist.yaml``) draws recognisable
digits, as a curve of sample quality against the demo's own wall-clock time.

    python scripts/bench_demo.py --label after                       # the demo as shipped, every 2 epochs
    PYTHONPATH=/path/to/old/checkout python scripts/bench_demo.py --label "batch 64 (before)" \\
        --config /path/to/old/checkout/configs/gan/mnist.yaml        # the same with an older lit_gen
    python scripts/bench_demo.py --table                             # both curves in one table

The run is the demo itself (its logger, checkpoints, sample grids and progress bar, written under a temporary
directory) with one callback added: every ``--every`` epochs it pauses the clock, draws 500 digits from the
sampling generator (the EMA copy when the run has one, and then the raw generator too) and scores them against the
500 validation digits on the shipped MNIST classifier's features: Fréchet distance, and the share of samples the
classifier calls a digit with ≥ 0.9 confidence. "Recognisable" is read off the curves: the time at which a run first
reaches the Fréchet distance the reference curve (``--reference``, default ``batch 64 (before), raw G``) ended
with. Writes ``<out>/<label>.json`` and ``<out>/table.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, write_results


class QualityClock(L.Callback):
    """Scores the samples every ``every`` epochs; ``seconds`` is the run's wall time without these evaluations."""

    def __init__(self, every: int, n: int = 500) -> None:
        self.every, self.n, self.points = every, n, []
        self.paused = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        t0 = time.perf_counter()
        point = {"epoch": epoch, "generator_steps": int(getattr(pl_module, "generator_steps", 0)),
                 "seconds": round(t0 - self.start - self.paused, 1)}  # fmt: skip
        point["fd"], point["confident"] = score(pl_module, trainer.datamodule, self.n)
        ema = getattr(pl_module, "generator_ema", None)
        if ema is not None:  # the same run's raw generator, for the EMA on/off comparison
            pl_module.generator_ema = None
            point["raw_fd"], point["raw_confident"] = score(pl_module, trainer.datamodule, self.n)
            pl_module.generator_ema = ema
        self.points.append(point)
        print(self.points[-1], flush=True)
        self.paused += time.perf_counter() - t0


def score(model: Any, dm: Any, n: int) -> tuple[float, float]:
    from lit_gen.metrics import ImageQuality

    val = dm.splits["val"]
    real = torch.stack([val[i][0] for i in range(min(n, len(val)))])
    labels = torch.stack([val[i][1] for i in range(len(real))])
    fake = model.sample(len(real), torch.Generator(model.device).manual_seed(0)).cpu()
    quality = ImageQuality(value_range=dm.value_range, kid_subset_size=len(real) // 2)
    quality.update(dm.to_float(real), fake.float(), labels)
    scores = quality.compute()
    return round(float(scores["fd"]), 2), round(float(scores["confident"]), 3)


def run(config: str, every: int, overrides: list[str]) -> dict[str, Any]:
    from lit_gen.cli import LitGenCLI

    config = str(Path(config).resolve())
    clock = QualityClock(every)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the demo's runs/ directory and config file go here
        try:
            cli = LitGenCLI(args=["--config", config, *overrides], run=False)
            cli.trainer.callbacks.append(clock)
            wall0 = time.perf_counter()
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            wall = time.perf_counter() - wall0 - clock.paused
        finally:
            os.chdir(cwd)
    return {"config": config, "overrides": overrides, "points": clock.points, "fit_seconds": round(wall, 1),
            "threads": torch.get_num_threads(), "lit_gen": str(Path(sys.modules["lit_gen"].__file__).parent),
            "machine": machine()}  # fmt: skip


def curves(runs: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every scored generator as one curve: ``label`` (the sampling generator) and ``label, raw G`` (with EMA)."""
    out = {}
    for label, r in runs.items():
        ema = "raw_fd" in r["points"][0]
        out[label + (", EMA G" if ema else "")] = r["points"]
        if ema:
            out[label + ", raw G"] = [p | {"fd": p["raw_fd"], "confident": p["raw_confident"]} for p in r["points"]]
    return out


def table(runs: dict[str, dict[str, Any]], reference: str) -> str:
    lines, all_curves = [], curves(runs)
    if reference in all_curves:
        target = all_curves[reference][-1]["fd"]
        lines.append(f"Target: the Fréchet distance `{reference}` ended with, **{target:.1f}**.\n")
        lines += ["| generator | reaches the target at | epoch | generator steps |", "|---|---|---|---|"]
        for name, points in all_curves.items():
            hit = next((p for p in points if p["fd"] <= target), None)
            cells = (
                [f"{hit['seconds']:.0f} s", str(hit["epoch"]), str(hit["generator_steps"])]
                if hit
                else ["not reached", "—", "—"]
            )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    for label, r in runs.items():
        extra = " ".join(r["overrides"]) or "as shipped"
        ema = "raw_fd" in r["points"][0]
        head = "| epoch | generator steps | seconds | FD | confident |" + (" raw G: FD | raw G: confident |" * ema)
        lines += [f"**{label}** (`{Path(r['config']).name}` {extra}; lit_gen from `{r['lit_gen']}`, "
                  f"{r['threads']} threads; whole fit {r['fit_seconds']:.0f} s)", "", head,
                  "|---" * (5 + 2 * ema) + "|"]  # fmt: skip
        for p in r["points"]:
            raw = f" {p['raw_fd']:.1f} | {p['raw_confident']:.3f} |" if ema else ""
            lines.append(f"| {p['epoch']} | {p['generator_steps']} | {p['seconds']:.0f} | {p['fd']:.1f} | "
                         f"{p['confident']:.3f} |{raw}")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/gan/mnist.yaml")
    parser.add_argument("--label", default="after", help="name of this run in the table")
    parser.add_argument("--every", type=int, default=2, help="score the samples every this many epochs")
    parser.add_argument("--table", action="store_true", help="only write the table of the runs under --out")
    parser.add_argument(
        "--reference",
        default="batch 64 (before), raw G",
        help="the curve whose final FD is the target, e.g. 'x, raw G'",
    )
    parser.add_argument("--out", type=Path, default=Path("results/demo"))
    args, overrides = parser.parse_known_args()  # the rest goes to the run, e.g. --trainer.max_epochs=20
    started = time.time()
    if not args.table:
        result = run(args.config, args.every, overrides)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(args.out.glob("*.json")) if p.stem != "results"}
    command = "python " + shlex.join(["scripts/bench_demo.py", *sys.argv[1:]])
    write_results(args.out, {"runs": runs}, table(runs, args.reference), command, started)


if __name__ == "__main__":
    main()
