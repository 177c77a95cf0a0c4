"""Benchmark: VQ-VAE compression of the MNIST-sample test digits, bits per image and PSNR, against PNG.

    python scripts/bench_vqvae.py                  # trains configs/vae/vqvae_mnist.yaml as shipped, then measures
    python scripts/bench_vqvae.py --ckpt PATH      # measures a trained checkpoint of that config

Every VQ-VAE rate is the length of real byte strings made by ``VQVAEModule.compress`` (checked to decompress to the
reconstruction bit for bit), except those marked as computed: the fixed-length payload ``H·W·log2 K`` and the
information content ``-Σ log2 p(code)`` under the training split's code frequencies (over the grid, or at each grid
position). PNG is lossless 8-bit
(torchvision's ``encode_png`` at compression level 9), so the ratio compares a lossy code with a lossless one.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.io import encode_png

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build, write_results

from lit_gen.compression import information_bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/vae/vqvae_mnist.yaml")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--out", type=Path, default=Path("results/vqvae"))
    args = parser.parse_args()
    started = time.time()
    cli = build(args.config)
    module, dm = cli.model, cli.datamodule
    train_seconds = None
    if args.ckpt is None:
        t0 = time.time()
        cli.trainer.fit(module, datamodule=dm)
        train_seconds = round(time.time() - t0, 1)
    else:
        state = torch.load(args.ckpt, map_location="cpu", weights_only=True)["state_dict"]
        state["code_counts"] = module.code_counts  # counted again below
        module.load_state_dict(state)
    module.cpu().eval()
    dm.setup()
    module.count_codes(dm.to_float(images) for images, _ in DataLoader(dm.splits["train"], batch_size=256))
    scores = cli.trainer.test(module, datamodule=dm, verbose=False)[0]

    images = torch.stack([image for image, _ in dm.splits["test"]])  # uint8 (N, C, H, W)
    x = dm.to_float(images)
    n, pixels = len(images), math.prod(images.shape[1:])
    per_image = {method: module.compress(x, method) for method in ("fixed", "frequency", "position")}
    stream = module.compress(x, "position", batched=True)
    recon = module.reconstruct(x)
    for data in (*per_image.values(), stream):
        assert torch.equal(module.decompress(data), recon), "decompress(compress(x)) differs from the reconstruction"
    png = [len(encode_png(image, compression_level=9)) for image in images]
    codes = module.codes(x)
    grid = tuple(codes.shape[1:])
    information = {
        m: information_bits(codes, module.code_probabilities(m)).mean().item() for m in ("frequency", "position")
    }
    k = module.num_codes

    def row(bits: float) -> dict[str, float | None]:
        return {"bits_per_image": bits, "bytes_per_image": bits / 8, "bits_per_pixel": bits / pixels}

    png_bits = 8 * sum(png) / n
    rows = {
        "raw 8-bit pixels": row(8.0 * pixels),
        "PNG, lossless (level 9)": row(png_bits),
        f"VQ-VAE codes, fixed length {grid[0]}×{grid[1]}·log2 {k} (computed, no header)": row(
            scores["test/bits_fixed"]
        ),
        "VQ-VAE file per image, fixed length (header + packed codes)": row(8 * sum(map(len, per_image["fixed"])) / n),
        "VQ-VAE file per image, range-coded with the training split's code frequencies": row(
            8 * sum(map(len, per_image["frequency"])) / n
        ),
        "VQ-VAE file per image, range-coded with the code frequencies at each grid position": row(
            8 * sum(map(len, per_image["position"])) / n
        ),
        "VQ-VAE, whole test split in one stream, frequencies at each position": row(8 * len(stream[0]) / n),
        "information content, code frequencies (computed)": row(information["frequency"]),
        "information content, frequencies at each position (computed)": row(information["position"]),
    }
    for name, r in rows.items():
        r["ratio_vs_png"] = png_bits / r["bits_per_image"]
        r["psnr"] = None if name.startswith(("raw", "PNG")) else scores["test/psnr"]  # None: lossless
    lines = [
        "| format | bytes/image | bits/image | bits/pixel | PNG size ÷ this | PSNR dB |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        psnr = "lossless" if r["psnr"] is None else f"{r['psnr']:.2f}"
        lines.append(f"| {name} | {r['bytes_per_image']:.1f} | {r['bits_per_image']:.1f} | "
                     f"{r['bits_per_pixel']:.3f} | {r['ratio_vs_png']:.2f}× | {psnr} |")  # fmt: skip
    note = (
        f"\n\n{n} test images of {'×'.join(map(str, images.shape[1:]))}; "
        f"MSE {scores['test/mse']:.5f} on [0, 1] pixels; "
        f"code usage on the test split {scores['test/usage']:.3f} (perplexity {scores['test/perplexity']:.1f} of {k}); "
        f"training: {train_seconds} s, torch threads: {torch.get_num_threads()}"
    )
    command = "python " + shlex.join(["scripts/bench_vqvae.py", *sys.argv[1:]])
    results = {
        "rows": rows,
        "test_scores": scores,
        "png_bytes": png,
        "train_seconds": train_seconds,
        "test_images": n,
        "grid": list(grid),
        "num_codes": k,
        "torch_threads": torch.get_num_threads(),
    }
    write_results(args.out, results, "\n".join(lines) + note + "\n", command, started)


if __name__ == "__main__":
    main()
