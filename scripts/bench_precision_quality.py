"""Benchmark: does training in bf16-mixed with channels-last cost quality? The demo GAN (``configs/gan/mnist.yaml``)
and the MNIST VAE (``configs/vae/mnist.yaml``) trained in ``32-true`` and in ``bf16-mixed`` + channels-last, several
seeds each, and scored the same way (in fp32, so only the training precision differs).

    python scripts/bench_precision_quality.py                      # 3 seeds x 2 precisions x {gan, vae}, 2 at a time
    python scripts/bench_precision_quality.py --gan-epochs 10 --vae-epochs 20 --jobs 2
    python scripts/bench_precision_quality.py --table              # only rebuild the table from <out>/records/*.json

Each run is ``python -m lit_gen fit --config ... --seed_everything=S --trainer.precision=P`` (bf16 adds
``--model.init_args.channels_last=true``), then ``python -m lit_gen test --ckpt_path <last.ckpt>
--trainer.precision=32-true`` with the config's own ``evaluation``: for the GAN the Fréchet distance on the shipped
MNIST classifier's features of the EMA generator's samples against the test digits (``test/fd``) and the share of
samples the classifier calls a digit with ≥ 0.9 confidence (``test/confident``); for the VAE the importance-weighted
``test/nll`` (k = ``--importance-samples``) and ``test/elbo``, nats per image. A seed's difference is "within the
seed-to-seed spread" when |mean(bf16) - mean(fp32)| is at most the larger of the two precisions' standard deviations
across seeds. Wall times are for information only (taken on shared cores, ``--jobs`` runs at a time).

Writes ``<out>/records/<module>-<precision>-seed<S>.json`` (one per run, so an interrupted sweep resumes),
``<out>/results.json`` and ``<out>/table.md``. Checkpoints and logs go under ``--workdir`` (not kept in git).
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import write_results

CONFIGS = {"gan": "configs/gan/mnist.yaml", "vae": "configs/vae/mnist.yaml"}
# (metric, label, lower is better) per module, read from the test run's metrics.csv
METRICS = {
    "gan": [("test/fd", "FD (EMA G)", True), ("test/confident", "confident share", False)],
    "vae": [("test/nll", "test NLL (IW)", True), ("test/elbo", "test ELBO", False)],
}
PRECISION_ARGS = {"32-true": ["--model.init_args.channels_last=false"],
                  "bf16-mixed": ["--model.init_args.channels_last=true"]}  # fmt: skip


def cpu_info() -> dict[str, Any]:
    """CPU model name and the bf16 matrix-unit flags of ``/proc/cpuinfo``."""
    name, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name") and name == "unknown":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags}  # fmt: skip


def last_values(metrics_csv: Path) -> dict[str, float]:
    """The last logged value of every column of a CSVLogger ``metrics.csv``."""
    out: dict[str, float] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            out |= {k: float(v) for k, v in row.items() if v not in ("", None)}
    return out


def run_one(
    module: str, precision: str, seed: int, epochs: int, k: int | None, workdir: Path, out: Path, extra: list[str]
) -> dict:
    """Fit one (module, precision, seed) and test its last checkpoint in fp32; writes and returns its record.
    ``extra``: more ``lit_gen fit`` arguments (e.g. ``--trainer.limit_train_batches=5`` for a smoke test)."""
    name = f"{module}-{precision}-seed{seed}"
    record_path = out / "records" / f"{name}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    run_dir = workdir / name
    py, config = sys.executable, CONFIGS[module]
    common = ["--config", config, "--trainer.enable_progress_bar=false",
              f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.logger.init_args.name=run"]  # fmt: skip
    fit = [py, "-m", "lit_gen", "fit", *common, f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}",
           f"--trainer.precision={precision}", *PRECISION_ARGS[precision], "--trainer.logger.init_args.version=fit",
           *extra]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(run_dir / "fit.log", "w") as log:
        subprocess.run(fit, stdout=log, stderr=subprocess.STDOUT, check=True)
    fit_seconds = time.time() - t0
    ckpt = run_dir / "run" / "fit" / "checkpoints" / "last.ckpt"
    test = [py, "-m", "lit_gen", "test", *common, f"--ckpt_path={ckpt}", "--trainer.precision=32-true",
            "--model.init_args.channels_last=false", "--trainer.logger.init_args.version=test"]  # fmt: skip
    if module == "vae" and k is not None:
        test.append(f"--model.init_args.importance_samples={k}")
    t0 = time.time()
    with open(run_dir / "test.log", "w") as log:
        subprocess.run(test, stdout=log, stderr=subprocess.STDOUT, check=True)
    test_seconds = time.time() - t0
    scores = last_values(run_dir / "run" / "test" / "metrics.csv")
    record = {"module": module, "config": config, "precision": precision,
              "channels_last": precision != "32-true", "seed": seed, "epochs": epochs,
              "scores": {key: v for key, v in scores.items() if key.startswith("test/")},
              "fit_seconds": round(fit_seconds, 1), "test_seconds": round(test_seconds, 1),
              "importance_samples": k if module == "vae" else None, "extra_fit_args": extra}  # fmt: skip
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(name, {m: record["scores"].get(m) for m, _, _ in METRICS[module]}, f"fit {fit_seconds:.0f} s", flush=True)
    return record


def vae_default_k() -> int:
    """``VAEModule(importance_samples=...)``'s default: the k of ``test/nll`` when the config does not set it."""
    from lit_gen import VAEModule

    return inspect.signature(VAEModule).parameters["importance_samples"].default


def se_diff(stats: dict[str, tuple[float, float]], precisions: list[str], runs: list[dict], metric: str) -> float:
    """Standard error of the difference of the two means (Welch), for the table's "Δ in SE"."""
    n = {p: sum(1 for r in runs if r["precision"] == p and metric in r["scores"]) for p in precisions}
    return math.sqrt(sum(stats[p][1] ** 2 / n[p] for p in precisions)) or float("nan")


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")


def table(records: list[dict[str, Any]], precisions: list[str]) -> str:
    lines = []
    for module in CONFIGS:
        runs = [r for r in records if r["module"] == module]
        if not runs:
            continue
        epochs = sorted({r["epochs"] for r in runs})
        k = runs[0].get("importance_samples") or vae_default_k()
        extra = f", test NLL with k = {k} importance samples" if module == "vae" else ""
        lines += [f"**{module.upper()}** (`{CONFIGS[module]}`, {'/'.join(map(str, epochs))} epochs{extra}; "
                  "mean ± std over seeds, each seed in brackets; within the spread: |Δ| ≤ the larger std, and "
                  "|Δ| in standard errors of the difference)", ""]  # fmt: skip
        head = ["metric", *[f"{p}{' + channels-last' * (p != '32-true')}" for p in precisions],
                "bf16 − fp32", "within seed spread"]  # fmt: skip
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for metric, label, _ in METRICS[module]:
            cells, stats = [], {}
            for p in precisions:
                vals = [r["scores"][metric] for r in sorted(runs, key=lambda r: r["seed"]) if r["precision"] == p]
                if not vals:
                    cells.append("—")
                    continue
                stats[p] = mean_std(vals)
                fmt = ".3f" if metric == "test/confident" else ".2f"
                each = ", ".join(format(v, fmt) for v in vals)
                cells.append(f"{stats[p][0]:{fmt}} ± {stats[p][1]:{fmt}} ({each})")
            if len(stats) == 2:
                (m0, s0), (m1, s1) = stats[precisions[0]], stats[precisions[1]]
                spread = max(s0, s1)
                within = "yes" if abs(m1 - m0) <= spread else "no"
                cells += [f"{m1 - m0:+.3f}" if metric == "test/confident" else f"{m1 - m0:+.2f}",
                          f"{within} ({abs(m1 - m0):.3g} {'≤' if within == 'yes' else '>'} {spread:.3g}; "
                          f"{abs(m1 - m0) / se_diff(stats, precisions, runs, metric):.1f} SE)"]  # fmt: skip
            else:
                cells += ["—", "—"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        walls = []
        for p in precisions:
            secs = [r["fit_seconds"] for r in runs if r["precision"] == p]
            if secs:
                walls.append(f"{p}: {', '.join(f'{s:.0f}' for s in secs)} s")
        total = sum(r["fit_seconds"] + r["test_seconds"] for r in runs) / 60
        lines += ["", "Fit wall time per run (shared cores, for information only): " + "; ".join(walls)
                  + f". All {len(runs)} runs with their tests: {total:.0f} min of run time.", ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs=2, default=["32-true", "bf16-mixed"], choices=list(PRECISION_ARGS))
    parser.add_argument("--gan-epochs", type=int, default=25, help="the demo's 25 unless time is short")
    parser.add_argument("--vae-epochs", type=int, default=20, help="the config's 20 unless time is short")
    parser.add_argument("--importance-samples", type=int, default=None, help="k of the VAE's test/nll (config: 64)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each with OMP_NUM_THREADS threads)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/precision-quality"))
    parser.add_argument("--out", type=Path, default=Path("results/precision-quality"))
    parser.add_argument("--fit-args", default="", help="more fit arguments, one string (smoke tests)")
    parser.add_argument("--table", action="store_true", help="only rebuild the table from <out>/records/*.json")
    args = parser.parse_args()
    started = time.time()
    if not args.table:
        epochs = {"gan": args.gan_epochs, "vae": args.vae_epochs}
        # seed-major order: an interrupted sweep still has both precisions of both modules for the first seeds
        jobs = [(m, p, s) for s in args.seeds for m in args.modules for p in args.precisions]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_one, m, p, s, epochs[m], args.importance_samples, args.workdir.resolve(),
                                   args.out, shlex.split(args.fit_args)) for m, p, s in jobs]  # fmt: skip
            for f in futures:
                f.result()
    records = [json.loads(p.read_text()) for p in sorted((args.out / "records").glob("*.json"))]
    info = cpu_info()
    flags = ", ".join(f"{f} {'yes' if info[f] else 'no'}" for f in ("avx512_bf16", "amx_bf16"))
    text = table(records, args.precisions) + (
        f"\nCPU: {info['cpu']} ({flags}), {info['cores']} cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.jobs} runs at a time.\n"
    )
    command = "python " + shlex.join(["scripts/bench_precision_quality.py", *sys.argv[1:]])
    results = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": info, "torch": torch.__version__,
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "jobs": args.jobs, "runs": records}  # fmt: skip
    write_results(args.out, results, text, command, started)


if __name__ == "__main__":
    main()
