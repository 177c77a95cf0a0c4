"""Export the generator of a GAN checkpoint to TorchScript and/or ONNX, and check the file against the eager net.

    python scripts/export.py --ckpt runs/gan-mnist/version_0/checkpoints/last.ckpt --format onnx --out gan.onnx
    python scripts/export.py --ckpt .../last.ckpt --format torchscript onnx --out gan   # gan.pt and gan.onnx

The checkpoint must be one the ``lit-gen`` CLI trained: it rebuilds its nets from the saved config. (A module built in
Python with your own nets: load it with those nets and call ``lit_gen.export.export_generator`` yourself.) The
generator exported is the one users sample from: the EMA generator when the GAN keeps one. The exported file is then
run on a batch of another size than the export's and compared with the eager generator; the script fails when the
max absolute difference is above ``--atol``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lit_gen.export import FORMATS, SUFFIXES, check_parity, export_generator, generator_of


def output_path(out: Path | None, ckpt: Path, fmt: str, several: bool) -> Path:
    """``--out``, given the format's suffix for several formats (or none); default ``<ckpt>_generator.{pt,onnx}``."""
    if out is None:
        return ckpt.with_name(f"{ckpt.stem}_generator{SUFFIXES[fmt]}")
    return out.with_suffix(SUFFIXES[fmt]) if several or not out.suffix else out


def size_text(n: int) -> str:
    """``2144262`` -> ``'2.1 MB'``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True, help="a GANModule checkpoint written by `lit-gen fit`")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=["onnx"], help="one or both (default: onnx)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: <ckpt>_generator.pt/.onnx)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch of the traced example input (default: 4)")
    parser.add_argument("--check-batch-size", type=int, default=7, help="batch of the parity check (default: 7)")
    parser.add_argument("--atol", type=float, default=1e-5, help="largest max abs difference accepted (default: 1e-5)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        parser.error(f"checkpoint {args.ckpt} does not exist; pass the path of a .ckpt file written by `lit-gen fit`")
    if args.check_batch_size == args.batch_size:
        parser.error("--check-batch-size must differ from --batch-size, so the check shows the batch axis is dynamic")

    import lit_gen  # Lightning is imported only now: --help and argument errors stay fast

    try:
        module = lit_gen.GANModule.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True)
    except (ValueError, RuntimeError) as err:
        sys.exit(
            f"cannot load {args.ckpt} as a GANModule: {err}\n(checkpoints of modules built in Python with your own "
            "nets need those nets again: load the module yourself and call lit_gen.export.export_generator)"
        )
    generator = generator_of(module)
    latent_dim = int(module.latent_dim)
    num_classes = int(getattr(generator, "num_classes", 0) or 0)
    for fmt in dict.fromkeys(args.format):
        path = output_path(args.out, args.ckpt, fmt, several=len(set(args.format)) > 1)
        export_generator(generator, path, fmt, latent_dim, num_classes, args.batch_size, args.opset)
        diff = check_parity(
            generator, path, fmt, latent_dim, num_classes, batch_size=args.check_batch_size, atol=args.atol
        )
        print(
            f"{fmt:<11}  {path}  {size_text(path.stat().st_size)}  max abs difference {diff:.3g} "
            f"(batch {args.check_batch_size}, exported with batch {args.batch_size})"
        )


if __name__ == "__main__":
    main()
