"""Benchmark: the rate–distortion curve of the VAE (several β) and of the VQ-VAE (several codebook sizes) on the
MNIST-sample test split.

    python scripts/bench_rate_distortion.py                       # β 0.25 … 8 and K 8 … 512, ~15 min on 2 cores
    python scripts/bench_rate_distortion.py --betas 1 4 --codes   # a shorter run, VAE only

Each point is a shipped config trained as is with one override (``--model.init_args.beta`` or the quantizer's
``num_codes``), then tested on the 500 test digits. Rate: the Gaussian VAE's KL in bits (the bits-back rate of its
latent, `test/rate`), the VQ-VAE's real compressed size in bits (`test/bits_per_image`, range-coded codes).
Distortion: MSE and PSNR of the reconstructions on [0, 1] pixels. Writes ``results.json``, ``table.md`` and
``rate_distortion.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, write_results

VAE_CONFIG, VQ_CONFIG = "configs/vae/mnist.yaml", "configs/vae/vqvae_mnist.yaml"


def point(config: str, override: str, rate_key: str, extra: list[str]) -> dict[str, Any]:
    """Train ``config`` with one override (and the command line's ``extra``) and test it: rate, MSE, PSNR."""
    vae_only = ["--model.init_args.importance_samples=0", "--model.init_args.evaluation=null"]
    cli = build(config, override, *(vae_only if config == VAE_CONFIG else []), *extra)
    t0 = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.time() - t0
    scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    result = {"config": config, "override": override, "rate_bits": scores[rate_key], "mse": scores["test/mse"],
              "psnr": scores["test/psnr"], "train_seconds": round(seconds, 1)}  # fmt: skip
    print(result, flush=True)
    return result


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for model, marker in (("VAE", "o"), ("VQ-VAE", "s")):
        mine = sorted((p for p in points if p["model"] == model), key=lambda p: p["rate_bits"])
        if not mine:
            continue
        ax.plot([p["rate_bits"] for p in mine], [p["psnr"] for p in mine], marker=marker, label=model)
        for p in mine:
            xy = (p["rate_bits"], p["psnr"])
            ax.annotate(p["label"], xy, textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("rate, bits per image (log scale)")
    ax.set_ylabel("PSNR, dB (higher = less distortion)")
    ax.set_title("Rate–distortion on 500 MNIST test digits")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", type=float, nargs="*", default=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--codes", type=int, nargs="*", default=[8, 32, 128, 512])
    parser.add_argument("--out", type=Path, default=Path("results/rate_distortion"))
    args, extra = parser.parse_known_args()  # the rest goes to every run, e.g. --trainer.max_epochs=1
    started = time.time()
    points = []
    for beta in args.betas:
        p = point(VAE_CONFIG, f"--model.init_args.beta={beta}", "test/rate", extra)
        points.append(p | {"model": "VAE", "label": f"β {beta:g}"})
    for k in args.codes:
        p = point(VQ_CONFIG, f"--model.init_args.quantizer.init_args.num_codes={k}", "test/bits_per_image", extra)
        points.append(p | {"model": "VQ-VAE", "label": f"K {k}"})
    lines = ["| model | setting | rate bits/image | MSE | PSNR dB | training |", "|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['model']} | {p['label']} | {p['rate_bits']:.1f} | {p['mse']:.4f} | {p['psnr']:.2f} | "
                     f"{p['train_seconds']:.0f} s |")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    plot(points, args.out / "rate_distortion.png")
    command = "python " + shlex.join(["scripts/bench_rate_distortion.py", *sys.argv[1:]])
    write_results(args.out, {"points": points}, "\n".join(lines) + "\n", command, started)


if __name__ == "__main__":
    main()
