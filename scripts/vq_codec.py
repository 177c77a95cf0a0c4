"""Compress image files to VQ-VAE codes and back, with a checkpoint written by ``lit-gen fit``.

    python scripts/vq_codec.py compress   --ckpt runs/vqvae-mnist/version_0/checkpoints/last.ckpt --out codes/ *.png
    python scripts/vq_codec.py decompress --ckpt runs/vqvae-mnist/version_0/checkpoints/last.ckpt --out out/ codes/*.vq

``compress`` writes one ``<name>.vq`` file per image (a header naming the codebook size and grid, then the codes,
range-coded under the training split's code frequencies at each grid position, or ``--method frequency`` / ``fixed``)
and prints the sizes: the file's length is the rate. ``decompress`` writes ``<name>.png``, the 8-bit reconstruction.
Images must have the size and channel count the model was trained on; pixels are mapped to the data's
``value_range`` saved in the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["compress", "decompress"])
    parser.add_argument("files", nargs="+", type=Path, help="images to compress, or .vq files to decompress")
    parser.add_argument("--ckpt", type=Path, required=True, help="a VQVAEModule checkpoint written by `lit-gen fit`")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--method", choices=["position", "frequency", "fixed"], default=None,
                        help="default: position, when the model counts codes per grid position")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        parser.error(f"checkpoint {args.ckpt} does not exist; pass the path of a .ckpt file written by `lit-gen fit`")
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")

    from torchvision.io import ImageReadMode, decode_image, write_png

    from lit_gen import VQVAEModule  # Lightning is imported only now: --help and argument errors stay fast

    try:
        module = VQVAEModule.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True).eval()
    except (ValueError, RuntimeError, TypeError) as err:
        sys.exit(f"cannot load {args.ckpt} as a VQVAEModule: {err}")
    low, high = module.pixel_range
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "compress":
        shape = getattr(module.encoder, "image_shape", None)
        mode = ImageReadMode.GRAY if shape is not None and shape[0] == 1 else ImageReadMode.RGB
        images = [decode_image(str(f), mode=mode) for f in args.files]
        for f, image in zip(args.files, images, strict=True):
            if shape is not None and tuple(image.shape) != tuple(shape):
                sys.exit(f"{f} is {tuple(image.shape)} but the model takes {tuple(shape)} images; resize it first")
        x = torch.stack(images).float() * ((high - low) / 255.0) + low
        total = 0
        for f, data in zip(args.files, module.compress(x, args.method), strict=True):
            (args.out / f"{f.stem}.vq").write_bytes(data)
            total += len(data)
            print(f"{f} -> {args.out / (f.stem + '.vq')}: {len(data)} bytes ({8 * len(data)} bits)")
        print(f"{len(images)} images, {total} bytes in all")
    else:
        recon = module.decompress([f.read_bytes() for f in args.files])
        pixels = ((recon - low) * (255.0 / (high - low))).round().clamp(0, 255).to(torch.uint8)
        for f, image in zip(args.files, pixels, strict=True):
            write_png(image, str(args.out / f"{f.stem}.png"))
            print(f"{f} -> {args.out / (f.stem + '.png')}")


if __name__ == "__main__":
    main()
