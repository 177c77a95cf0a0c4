"""Benchmark 3: importance-weighted NLL (k = 5000, Burda et al. 2015) on the MNIST-sample test split, for VAEs trained
on the ELBO and on the IWAE bound.

    python scripts/bench_vae_nll.py                                   # configs/vae/mnist.yaml and iwae_mnist.yaml
    python scripts/bench_vae_nll.py --configs configs/vae/mnist.yaml --ckpt PATH   # a trained checkpoint

Each config is trained as shipped (same nets, data, epochs and optimizer; only the objective differs), then scored
with the ELBO and the IWAE estimate of -log p(x) for several k, in nats per image and bits per dimension (Bernoulli
likelihood on [0, 1] intensities: not comparable with results on binarised MNIST).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, write_results


def evaluate(config: str, ks: list[int], ckpt: str | None) -> dict[str, Any]:
    """Train ``config`` (unless ``ckpt``), then test with every k; returns the figures of one config."""
    cli = build(config, "--model.init_args.evaluation=null")
    train_seconds = None
    if ckpt is None:
        t0 = time.time()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        train_seconds = round(time.time() - t0, 1)
    rows = {}
    for k in ks:
        cli.model.importance_samples = k
        t0 = time.time()
        scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False)[0]
        rows[k] = {"nll": scores["test/nll"], "bpd": scores["test/bpd"], "elbo": scores["test/elbo"],
                   "seconds": round(time.time() - t0, 1)}  # fmt: skip
        print(config, k, rows[k], flush=True)
    objective = f"IWAE k = {cli.model.iwae_samples}" if cli.model.iwae_samples > 1 else "ELBO"
    return {"config": config, "objective": objective, "rows": rows, "train_seconds": train_seconds,
            "epochs": cli.trainer.max_epochs, "dims": math.prod(cli.datamodule.image_shape),
            "test_images": len(cli.datamodule.splits["test"])}  # fmt: skip


def table(results: list[dict[str, Any]], ks: list[int]) -> str:
    head = ["trained on", "config", "-ELBO"] + [f"IWAE k = {k}" for k in ks] + ["bits/dim (k = max)", "training"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        elbo = -r["rows"][ks[0]]["elbo"]
        nlls = [f"{r['rows'][k]['nll']:.2f}" for k in ks]
        train = f"{r['train_seconds']:.0f} s, {r['epochs']} epochs" if r["train_seconds"] else "checkpoint"
        lines.append(f"| {r['objective']} | `{r['config']}` | {elbo:.2f} | " + " | ".join(nlls)
                     + f" | {r['rows'][ks[-1]]['bpd']:.4f} | {train} |")  # fmt: skip
    timing = ", ".join(f"k = {k}: {results[0]['rows'][k]['seconds']:.0f} s" for k in ks)
    return "\n".join(lines) + f"\n\nnats per image on the {results[0]['test_images']} test digits; eval time {timing}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["configs/vae/mnist.yaml", "configs/vae/iwae_mnist.yaml"])
    parser.add_argument("--ckpt", default=None, help="evaluate this checkpoint (with one config) instead of training")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 50, 5000])
    parser.add_argument("--out", type=Path, default=Path("results/vae_nll"))
    args = parser.parse_args()
    if args.ckpt and len(args.configs) != 1:
        parser.error("--ckpt needs exactly one --configs entry")
    started = time.time()
    results = [evaluate(config, args.k, args.ckpt) for config in args.configs]
    command = "python " + shlex.join(["scripts/bench_vae_nll.py", *sys.argv[1:]])
    extra = {"results": results, "torch_threads": torch.get_num_threads()}
    write_results(args.out, extra, table(results, args.k), command, started)


if __name__ == "__main__":
    main()
