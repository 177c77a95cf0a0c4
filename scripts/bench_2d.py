"""Benchmark 1: mode collapse on PacGAN's 2D ring (8 modes) and grid (25 modes), 10 seeds each.

    python scripts/bench_2d.py                      # both mixtures, 10 seeds, results in results/2d/
    python scripts/bench_2d.py --seeds 2 --jobs 2   # quicker

Each seed trains ``configs/gan/<mixture>.yaml`` as shipped (with that seed for the nets and the data) and scores
2,500 generated points with PacGAN's protocol (``lit_gen.metrics.MixtureQuality``). The table puts the mean ± standard
error next to the published rows; a scatter plot of seed 0's samples over the modes is saved beside it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, mean_se, write_results

# Published rows. VEEGAN (Srivastava et al. 2017, Table 1) reports modes and high-quality %; PacGAN (Lin et al. 2018,
# arXiv 1712.04086, Tables 2-3) adds reverse KL and its packed discriminators. Same protocol, their own nets.
PUBLISHED = {
    "ring": [
        ("GAN (VEEGAN paper)", "1.0", "99.3", "—"),
        ("Unrolled GAN (VEEGAN paper)", "7.6", "35.6", "—"),
        ("VEEGAN", "8.0", "52.9", "—"),
        ("PacGAN2", "7.7 ± 0.1", "95.6 ± 2.0", "0.301 ± 0.024"),
        ("PacGAN3", "7.8 ± 0.1", "97.7 ± 0.3", "0.180 ± 0.025"),
        ("PacGAN4", "7.8 ± 0.1", "95.9 ± 1.4", "0.189 ± 0.021"),
    ],
    "grid": [
        ("GAN (VEEGAN paper)", "3.3", "0.5", "—"),
        ("Unrolled GAN (VEEGAN paper)", "23.6", "16.0", "—"),
        ("VEEGAN", "24.6", "40.0", "—"),
        ("PacGAN2", "23.8 ± 0.7", "91.3 ± 0.8", "0.131 ± 0.053"),
        ("PacGAN3", "24.6 ± 0.4", "94.2 ± 0.4", "0.071 ± 0.028"),
        ("PacGAN4", "24.8 ± 0.2", "93.6 ± 0.6", "0.049 ± 0.016"),
    ],
}
TARGETS = {"ring": 8, "grid": 25}


def run_seed(mixture: str, seed: int, overrides: list[str], plot_dir: str | None) -> dict[str, Any]:
    """Train and score one seed in this (worker) process, on one thread."""
    import torch

    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.time()
    cli = build(f"configs/gan/{mixture}.yaml", f"--seed_everything={seed}", f"--data.init_args.seed={seed}", *overrides)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    scores = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    result = {
        "mixture": mixture,
        "seed": seed,
        "modes": scores["test/modes"],
        "high_quality": scores["test/high_quality"],
        "reverse_kl": scores["test/reverse_kl"],
        "generator_steps": int(cli.model.generator_steps),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "wall_seconds": round(time.time() - wall0, 1),
    }
    if plot_dir is not None:
        result["plot"] = plot(cli.model, mixture, Path(plot_dir))
    print(result, flush=True)
    return result


def plot(model: Any, mixture: str, out: Path) -> str | None:
    """Scatter 2,500 generated points over the modes and their 3-std circles: ``<out>/<mixture>_seed0.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", flush=True)
        return None
    import torch

    from lit_gen.metrics import mixture_modes

    points = model.sample(2500, torch.Generator().manual_seed(0)).cpu()
    modes, std = mixture_modes(mixture)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, label="generated")
    for x, y in modes.tolist():
        ax.add_patch(plt.Circle((x, y), 3 * std, fill=False, color="red", lw=0.8))
    ax.scatter(modes[:, 0], modes[:, 1], s=8, color="red", label="modes (3 std circles)")
    ax.set_aspect("equal")
    ax.set_title(f"2D-{mixture}, seed 0")
    ax.legend(loc="upper right", fontsize=7)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{mixture}_seed0.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for mixture, runs in results.items():
        modes = mean_se([r["modes"] for r in runs])
        hq = mean_se([100 * r["high_quality"] for r in runs])
        kl = mean_se([r["reverse_kl"] for r in runs])
        cpu = mean_se([r["cpu_seconds"] for r in runs])
        all_modes = sum(r["modes"] == TARGETS[mixture] for r in runs)
        lines += [
            f"**2D-{mixture}** ({TARGETS[mixture]} modes, {len(runs)} seeds; "
            f"all modes in {all_modes}/{len(runs)} seeds; "
            f"{cpu[0]:.0f} ± {cpu[1]:.0f} CPU s per seed)",
            "",
            "| model | modes | high-quality % | reverse KL |",
            "|---|---|---|---|",
            f"| **lit_gen** `configs/gan/{mixture}.yaml` | **{modes[0]:.1f} ± {modes[1]:.1f}** | "
            f"**{hq[0]:.1f} ± {hq[1]:.1f}** | **{kl[0]:.3f} ± {kl[1]:.3f}** |",
            *(f"| {name} | {m} | {h} | {k} |" for name, m, h, k in PUBLISHED[mixture]),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixtures", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once (one thread each)")
    parser.add_argument("--out", type=Path, default=Path("results/2d"))
    parser.add_argument("overrides", nargs="*", help="extra LightningCLI arguments, e.g. --trainer.max_epochs=5")
    args, unknown = parser.parse_known_args()
    overrides = [*args.overrides, *unknown]
    started = time.time()
    jobs = [(m, s, overrides, str(args.out) if s == 0 else None) for m in args.mixtures for s in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(run_seed, *zip(*jobs, strict=True)))
    results = {m: [r for r in done if r["mixture"] == m] for m in args.mixtures}
    command = "python " + shlex.join(["scripts/bench_2d.py", *sys.argv[1:]])
    write_results(args.out, {"runs": results}, table(results), command, started)


if __name__ == "__main__":
    main()
