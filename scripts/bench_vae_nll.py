"""Benchmark 3: importance-weighted NLL (k = 5000, Burda et al. 2015) of the default VAE on the MNIST-sample test split.

    python scripts/bench_vae_nll.py                  # trains configs/vae/mnist.yaml as shipped, then evaluates
    python scripts/bench_vae_nll.py --ckpt PATH      # evaluates a trained checkpoint

The table gives the ELBO and the IWAE estimate of -log p(x) for several k, in nats per image and bits per dimension
(Bernoulli likelihood on [0, 1] intensities: not comparable with results on binarised MNIST).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/vae/mnist.yaml")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 50, 5000])
    parser.add_argument("--out", type=Path, default=Path("results/vae_nll"))
    args = parser.parse_args()
    started = time.time()
    cli = build(args.config, "--model.init_args.evaluation=null")
    train_seconds = None
    if args.ckpt is None:
        t0 = time.time()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        train_seconds = round(time.time() - t0, 1)
    rows = {}
    for k in args.k:
        cli.model.importance_samples = k
        t0 = time.time()
        scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=args.ckpt, verbose=False)[0]
        rows[k] = {"nll": scores["test/nll"], "bpd": scores["test/bpd"], "elbo": scores["test/elbo"],
                   "seconds": round(time.time() - t0, 1)}  # fmt: skip
        print(k, rows[k], flush=True)
    dims = math.prod(cli.datamodule.image_shape)
    elbo = rows[args.k[0]]["elbo"]
    lines = ["| bound | -log p(x) nats/image | bits/dim | eval time |", "|---|---|---|---|",
             f"| ELBO (closed-form KL, one z) | {-elbo:.2f} | {-elbo / (dims * math.log(2)):.4f} | — |"]  # fmt: skip
    lines += [f"| IWAE, k = {k} | {r['nll']:.2f} | {r['bpd']:.4f} | {r['seconds']:.0f} s |" for k, r in rows.items()]
    n_test = len(cli.datamodule.splits["test"])
    note = f"\n{n_test} test images; training: {train_seconds} s" if train_seconds else f"\n{n_test} test images"
    command = "python " + shlex.join(["scripts/bench_vae_nll.py", *sys.argv[1:]])
    results = {
        "rows": rows,
        "train_seconds": train_seconds,
        "test_images": n_test,
        "torch_threads": torch.get_num_threads(),
    }
    write_results(args.out, results, "\n".join(lines) + note + "\n", command, started)


if __name__ == "__main__":
    main()
