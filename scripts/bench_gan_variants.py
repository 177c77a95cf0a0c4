"""Benchmark 4: what each GAN option buys, on the 2D ring and grid (modes) and on MNIST sample (Fréchet distance).

    python scripts/bench_gan_variants.py --protocols ring grid --seeds 2 --jobs 2   # 2D, results/gan-variants-2d
    python scripts/bench_gan_variants.py --protocols mnist --jobs 2                  # results/gan-variants-mnist
    python scripts/bench_gan_variants.py --protocols mnist --mnist-epochs 20 --threads 1   # beside another run

Every variant is a shipped config plus the overrides listed in ``VARIANTS`` (so each row can be re-run with
``lit-gen fit --config ... <overrides>``). Every run trains with an EMA generator (``ema_decay=0.999``,
``ema_warmup=10``; the average never feeds back into training) and is tested twice: with the EMA generator and with
the raw one. That gives the "EMA on/off" comparison of every variant from one training run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, mean_se, write_results

M = "--model.init_args."
D = M + "discriminator.init_args."
EMA = [M + "ema_decay=0.999", M + "ema_warmup=10"]

VARIANTS_2D: dict[str, list[str]] = {
    "non-saturating (shipped)": [],
    "WGAN-GP (λ 0.1, n_critic 5, Adam 1e-4 β (0.5, 0.9); 10 epochs: the same 19,500 D steps)": [
        M + "loss=wasserstein", M + "gradient_penalty=0.1", M + "n_critic=5", "--trainer.max_epochs=10",
        M + "generator_optimizer.init_args.lr=0.0001", M + "discriminator_optimizer.init_args.lr=0.0001",
        M + "generator_optimizer.init_args.betas=[0.5,0.9]", M + "discriminator_optimizer.init_args.betas=[0.5,0.9]",
    ],
    "hinge + spectral norm": [M + "loss=hinge", D + "spectral_norm=true"],
    "R1 (γ 0.01, lazy every 4)": [M + "r1_gamma=0.01", M + "d_reg_interval=4"],
    "PacGAN4": [M + "pack=4", D + "image_shape=[8]"],
}  # fmt: skip

VARIANTS_MNIST: dict[str, list[str]] = {
    "non-saturating DCGAN (shipped)": [],
    "WGAN-GP (λ 10, n_critic 1, Adam 1e-4 β (0.5, 0.9))": [
        M + "loss=wasserstein", M + "gradient_penalty=10", M + "n_critic=1", D + "norm=none",
        M + "generator_optimizer.init_args.lr=0.0001", M + "discriminator_optimizer.init_args.lr=0.0001",
        M + "generator_optimizer.init_args.betas=[0.5,0.9]", M + "discriminator_optimizer.init_args.betas=[0.5,0.9]",
    ],
    "hinge + spectral norm": [M + "loss=hinge", D + "spectral_norm=true", D + "norm=none"],
    "R1 (γ 1, lazy every 4)": [M + "r1_gamma=1.0", M + "d_reg_interval=4", D + "norm=none"],
    "PacGAN2": [M + "pack=2", D + "image_shape=[2,28,28]"],
    "DiffAugment (color, translation, cutout)": [M + "diffaugment=color,translation,cutout"],
    "conditional: class embedding G + projection D": ["config=configs/gan/cond_mnist.yaml"],
}  # fmt: skip

CONFIGS = {"ring": "configs/gan/ring.yaml", "grid": "configs/gan/grid.yaml", "mnist": "configs/gan/mnist.yaml"}
TARGETS = {"ring": 8, "grid": 25}
MNIST_COLUMNS = ["fd", "kid", "precision", "recall", "classes"]


def run(
    protocol: str, variant: str, overrides: list[str], seed: int, threads: int, epochs: int | None
) -> dict[str, Any]:
    """Train one variant and test it with the EMA and the raw generator."""
    import torch

    torch.set_num_threads(threads)
    cpu0 = time.process_time()
    seeds = [f"--seed_everything={seed}"] + ([f"--data.init_args.seed={seed}"] if protocol != "mnist" else [])
    config = CONFIGS[protocol]
    if overrides and overrides[0].startswith("config="):
        config, overrides = overrides[0].removeprefix("config="), overrides[1:]
    budget = [f"--trainer.max_epochs={epochs}"] if epochs and protocol == "mnist" else []
    cli = build(config, *seeds, *EMA, *budget, *overrides)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    train_cpu = time.process_time() - cpu0
    scores = {"ema": cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]}
    scores["ema"]["test/label_accuracy"] = label_accuracy(cli.model)
    ema, cli.model.generator_ema = cli.model.generator_ema, None
    scores["raw"] = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    scores["raw"]["test/label_accuracy"] = label_accuracy(cli.model)
    cli.model.generator_ema = ema
    keys = [*MNIST_COLUMNS, "label_accuracy"] if protocol == "mnist" else ["modes", "high_quality", "reverse_kl"]
    result = {"protocol": protocol, "variant": variant, "seed": seed, "overrides": overrides}
    result |= {f"{which}_{k}": float(s[f"test/{k}"]) for which, s in scores.items() for k in keys}
    result |= {"generator_steps": int(cli.model.generator_steps), "train_cpu_seconds": round(train_cpu, 1),
               "epochs": cli.trainer.current_epoch}  # fmt: skip
    print(result, flush=True)
    return result


def label_accuracy(model: Any, n: int = 1000) -> float:
    """A conditional GAN's share of samples that the shipped MNIST classifier assigns to the requested class (NaN
    for an unconditional GAN)."""
    import torch

    from lit_gen.metrics.features import load_classifier

    if not model.num_classes or tuple(model.generator.image_shape) != (1, 28, 28):
        return float("nan")
    classifier, _ = load_classifier("mnist_sample")
    labels = torch.arange(n) % model.num_classes
    images = model.sample(n, torch.Generator().manual_seed(0), labels=labels)
    return classifier.accuracy((images.cpu() + 1) / 2, labels)  # the config's data is in [-1, 1]


def table_2d(protocol: str, runs: list[dict[str, Any]]) -> str:
    n = len({r["seed"] for r in runs})
    lines = [
        f"**2D-{protocol}** ({TARGETS[protocol]} modes; mean ± s.e. over {n} seeds; `{CONFIGS[protocol]}` + overrides)",
        "",
        "| variant | EMA | modes | all modes | high-quality % | reverse KL | train CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == variant]
        cpu = mean_se([r["train_cpu_seconds"] for r in rows])[0]
        for which in ("raw", "ema"):
            modes = mean_se([r[f"{which}_modes"] for r in rows])
            hq = mean_se([100 * r[f"{which}_high_quality"] for r in rows])
            kl = mean_se([r[f"{which}_reverse_kl"] for r in rows])
            full = sum(r[f"{which}_modes"] == TARGETS[protocol] for r in rows)
            ema = "on" if which == "ema" else "off"
            lines.append(
                f"| {variant} | {ema} | {modes[0]:.1f} ± {modes[1]:.1f} | {full}/{len(rows)} "
                f"| {hq[0]:.1f} ± {hq[1]:.1f} | {kl[0]:.3f} ± {kl[1]:.3f} | {cpu:.0f} |"
            )
    return "\n".join(lines) + "\n"


def table_mnist(runs: list[dict[str, Any]], floor: float) -> str:
    epochs = "/".join(str(e) for e in sorted({r["epochs"] for r in runs}))
    lines = [
        f"**MNIST sample** (`{CONFIGS['mnist']}` + overrides, {epochs} epochs, seed 0; floor = real validation "
        f"vs test digits, FD {floor:.2f})",
        "",
        "| variant | EMA | FD | FD / floor | KID | precision | recall | classes | label accuracy | train CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for which in ("raw", "ema"):
            lines.append(
                f"| {r['variant']} | {'on' if which == 'ema' else 'off'} | {r[f'{which}_fd']:.2f} | "
                f"{r[f'{which}_fd'] / floor:.1f}× | {r[f'{which}_kid']:.2f} | {r[f'{which}_precision']:.3f} | "
                f"{r[f'{which}_recall']:.3f} | {r[f'{which}_classes']:.0f} | "
                f"{accuracy(r[f'{which}_label_accuracy'])} | {r['train_cpu_seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def accuracy(value: float) -> str:
    return "—" if value != value else f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", nargs="+", default=["ring", "grid", "mnist"], choices=list(CONFIGS))
    parser.add_argument("--seeds", type=int, default=2, help="seeds per 2D variant (MNIST: seed 0)")
    parser.add_argument("--variants", nargs="*", help="run only the variants whose name starts with one of these")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: 1 with --jobs > 1, else 2)"
    )
    parser.add_argument("--mnist-epochs", type=int, default=None, help="train the MNIST variants this many epochs")
    parser.add_argument(
        "--include",
        type=Path,
        nargs="*",
        default=[],
        help="results.json files of earlier runs to reuse (their protocol/variant/seed are not rerun)",
    )
    parser.add_argument("--tables-only", action="store_true", help="only the tables of the --include runs")
    parser.add_argument("--out", type=Path, default=None)
    args, overrides = parser.parse_known_args()
    started = time.time()
    jobs = []
    for protocol in args.protocols:
        variants = VARIANTS_MNIST if protocol == "mnist" else VARIANTS_2D
        seeds = [0] if protocol == "mnist" else range(args.seeds)
        for name, extra in variants.items():
            if args.variants and not any(name.startswith(v) for v in args.variants):
                continue
            threads = args.threads or (1 if args.jobs > 1 else 2)
            jobs += [(protocol, name, [*extra, *overrides], s, threads, args.mnist_epochs) for s in seeds]
    earlier = [r for path in args.include for r in json.loads(path.read_text())["runs"]]
    known = {(r["protocol"], r["variant"], r["seed"]) for r in earlier}
    jobs = [] if args.tables_only else [j for j in jobs if (j[0], j[1], j[3]) not in known]
    jobs.sort(key=lambda j: "WGAN" not in j[1])  # the slowest first, so the pool ends together
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        done = earlier + (list(pool.map(run, *zip(*jobs, strict=True))) if jobs else [])
    tables = []
    for protocol in args.protocols:
        runs = [r for r in done if r["protocol"] == protocol]
        if not runs:
            continue
        order = list(VARIANTS_MNIST if protocol == "mnist" else VARIANTS_2D)
        runs.sort(key=lambda r: (order.index(r["variant"]), r["seed"]))
        if protocol == "mnist":
            from bench_mnist import real_floor

            tables.append(table_mnist(runs, real_floor(CONFIGS["mnist"])["fd"]))
        else:
            tables.append(table_2d(protocol, runs))
    out = args.out or Path("results") / ("gan-variants-mnist" if args.protocols == ["mnist"] else "gan-variants-2d")
    command = "python " + shlex.join(["scripts/bench_gan_variants.py", *sys.argv[1:]])
    write_results(out, {"runs": done}, "\n".join(tables), command, started)


if __name__ == "__main__":
    main()
