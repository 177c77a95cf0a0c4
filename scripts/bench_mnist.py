"""Benchmark 2: the default GAN and VAE configs on the 5,000-digit MNIST sample, scored on classifier features.

    python scripts/bench_mnist.py            # trains configs/gan/mnist.yaml and configs/vae/mnist.yaml as shipped

Each model is trained with its config's CPU budget (the epochs in the file) and tested on the held-out test split
(500 digits): Fréchet distance and KID on the shipped MNIST classifier's features, precision/recall,
density/coverage (k=5) and class coverage, with as many generated digits as real ones. The floor row scores the 500
validation digits (real, never trained on by the models or the classifier) against the same test digits: no model
can be expected to beat it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, write_results

COLUMNS = ["fd", "kid", "precision", "recall", "density", "coverage", "classes", "class_kl", "confident"]


def train_and_test(config: str, overrides: list[str]) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.time()
    cli = build(config, *overrides)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    train_wall = time.time() - wall0
    scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    row = {k: scores[f"test/{k}"] for k in COLUMNS}
    row |= {"epochs": cli.trainer.current_epoch, "train_wall_seconds": round(train_wall, 1)}
    row["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    return row


def real_floor(config: str) -> dict[str, Any]:
    """Validation digits scored as if generated, against the test digits (the classifier trained on neither)."""
    from lit_gen.metrics import ImageQuality

    cli = build(config)
    dm = cli.datamodule
    dm.setup()
    test, val = dm.splits["test"], dm.splits["val"]
    real = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.stack([test[i][1] for i in range(len(test))])
    other = torch.stack([val[i][0] for i in range(len(val))])
    quality = ImageQuality(value_range=dm.value_range)
    for start in range(0, len(real), dm.batch_size):
        part = slice(start, start + dm.batch_size)
        quality.update(dm.to_float(real[part]), dm.to_float(other[part]), labels[part])
    return {k: float(v) for k, v in quality.compute().items() if k in COLUMNS}


def table(rows: dict[str, dict[str, Any]]) -> str:
    floor = rows["real: validation vs test digits (floor)"]["fd"]
    head = "| | FD | FD / floor | KID | precision | recall | density | coverage | classes | class KL | confident "
    head += "| training |"
    lines = [head, "|" + "---|" * 12]
    for name, r in rows.items():
        train = f"{r['epochs']} epochs, {r['train_wall_seconds'] / 60:.1f} min" if "epochs" in r else "—"
        lines.append(
            f"| {name} | {r['fd']:.2f} | {r['fd'] / floor:.1f}× | {r['kid']:.2f} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} | {r['classes']:.0f} | "
            f"{r['class_kl']:.3f} | {r['confident']:.3f} | {train} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/mnist"))
    parser.add_argument("--gan-config", default="configs/gan/mnist.yaml")
    parser.add_argument("--vae-config", default="configs/vae/mnist.yaml")
    parser.add_argument("overrides", nargs="*", help="extra LightningCLI arguments for both runs")
    args, unknown = parser.parse_known_args()
    overrides = [*args.overrides, *unknown]
    started = time.time()
    rows = {
        f"GAN `{args.gan_config}`": train_and_test(args.gan_config, overrides),
        f"VAE `{args.vae_config}`": train_and_test(args.vae_config, overrides),
        "real: validation vs test digits (floor)": real_floor(args.gan_config),
    }
    command = "python " + shlex.join(["scripts/bench_mnist.py", *sys.argv[1:]])
    write_results(args.out, {"rows": rows}, table(rows), command, started)


if __name__ == "__main__":
    main()
