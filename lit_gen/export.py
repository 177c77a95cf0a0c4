"""Export a GAN generator to TorchScript or ONNX, and check the exported file against the eager net.

    from lit_gen.export import check_parity, export_generator, generator_of

    generator = generator_of(module)  # the EMA generator when the GAN keeps one
    path = export_generator(generator, "gan.onnx", "onnx", latent_dim=module.latent_dim)
    check_parity(generator, path, "onnx", latent_dim=module.latent_dim)  # max |Δ| over a batch of 7

The exported net maps ``z (B, latent_dim)`` (and int64 ``labels (B,)`` for a class-conditional generator) to
``images (B, C, H, W)`` for any batch size B.

- **TorchScript** is *traced* (``torch.jit.trace``): ``torch.jit.script`` fails on arbitrary user nets (it compiles
  a subset of Python; even lit_gen's ``DCGANGenerator`` is rejected, at its label check), while tracing records the
  tensor operations of one call.
  Control flow that depends on the configuration (conditional or not) is fine; control flow that depends on tensor
  values is frozen at the example's branch. torch 2.14 warns that ``torch.jit`` is deprecated; that warning is
  silenced here (the files still load in C++ with libtorch and in Python with ``torch.jit.load``).
- **ONNX** goes through torch's default exporter since 2.9, ``torch.onnx.export(..., dynamo=True)`` (``torch.export``
  then onnxscript), with a named dynamic ``batch`` axis, default opset (20 in torch 2.14), weights inside the one
  ``.onnx`` file (external data only past protobuf's 2 GiB limit). Needs ``pip install 'lit-gen[export]'``
  (onnx, onnxscript; onnxruntime for :func:`check_parity`).
"""

from __future__ import annotations

import copy
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

ExportFormat = Literal["torchscript", "onnx"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
INLINE_LIMIT = 1_800_000_000  # bytes of weights above which ONNX weights go to a `.data` file (protobuf: 2 GiB)


def generator_of(module: nn.Module) -> nn.Module:
    """The net to export: a GAN module's sampling generator (its EMA when it keeps one), or a bare ``nn.Module``.

    An ``AveragedModel`` (the EMA) is unwrapped to the averaged net it holds, which has the generator's attributes
    (``latent_dim``, ``num_classes``) and no ``n_averaged`` counter.
    """
    generator = getattr(module, "sampling_generator", module.generator) if hasattr(module, "generator") else module
    return generator.module if isinstance(generator, AveragedModel) else generator


def export_generator(
    generator: nn.Module,
    path: str | Path,
    format: ExportFormat,
    latent_dim: int,
    num_classes: int = 0,
    batch_size: int = 4,
    opset: int | None = None,
) -> Path:
    """Write ``generator`` to ``path`` as TorchScript or ONNX with a dynamic batch axis.

    The caller's net is left as it is (mode, device): a copy is exported, in eval mode, on the CPU.

    Args:
        generator: ``z (B, latent_dim) -> images (B, C, H, W)``, ``generator(z, labels)`` when ``num_classes > 0``.
        path: the file to write (its folder is created).
        format: ``"torchscript"`` (traced) or ``"onnx"`` (inputs ``z`` and ``labels``, output ``images``).
        latent_dim: size of ``z``.
        num_classes: > 0 for a class-conditional generator (int64 labels in ``[0, num_classes)``).
        batch_size: batch of the example input traced; >= 2 (torch.export specializes a batch of 1).
        opset: ONNX opset; None = the exporter's default.

    Returns:
        The path written.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for a dynamic batch axis, got {batch_size}")
    if format == "onnx":
        require("onnx", "onnxscript")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _eval_copy(generator)
    inputs = example_inputs(net, latent_dim, num_classes, batch_size, seed=0)
    if format == "torchscript":
        with warnings.catch_warnings(), torch.no_grad():
            _quiet_torchscript()
            torch.jit.trace(net, inputs).save(str(path))
        return path
    _export_onnx(net, inputs, path, opset)
    return path


def check_parity(
    generator: nn.Module,
    path: str | Path,
    format: ExportFormat,
    latent_dim: int,
    num_classes: int = 0,
    batch_size: int = 7,
    seed: int = 0,
    atol: float = 1e-5,
) -> float:
    """Run the exported file and the eager ``generator`` (eval mode, CPU) on the same seeded inputs.

    Use a ``batch_size`` other than the export's: a match then also shows that the batch axis is dynamic.

    Args:
        generator: the eager net the file was exported from (left as it is: a copy is run).
        path: the exported file.
        format: ``"torchscript"`` or ``"onnx"`` (run with onnxruntime on the CPU).
        latent_dim: size of ``z``.
        num_classes: > 0 for a class-conditional generator.
        batch_size: batch of the comparison.
        seed: seed of ``z`` (and the labels).
        atol: largest max absolute difference accepted.

    Returns:
        The max absolute difference between the two outputs, ``(B, C, H, W)`` each.

    Raises:
        ValueError: when the difference is above ``atol`` (or not finite), or the output shapes differ.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    net = _eval_copy(generator)
    inputs = example_inputs(net, latent_dim, num_classes, batch_size, seed)
    with torch.no_grad():
        exported = _run_exported(Path(path), format, inputs)  # first: its errors name the file
        expected = net(*inputs)
    if exported.shape != expected.shape:
        raise ValueError(
            f"{format} export {path} returned shape {tuple(exported.shape)} for a batch of {batch_size}, the "
            f"generator {tuple(expected.shape)}"
        )
    diff = (exported.to(expected.dtype) - expected).abs().max().item() if expected.numel() else 0.0
    if not diff <= atol:  # NaN fails too
        raise ValueError(f"{format} export {path} differs from the generator by {diff:.3g} (max abs) > atol={atol:g}")
    return diff


def example_inputs(net: nn.Module, latent_dim: int, num_classes: int, batch_size: int, seed: int) -> tuple[Tensor, ...]:
    """Seeded ``(z,)`` or ``(z, labels)``: ``z (B, latent_dim)`` ~ N(0, I) in the net's dtype, labels int64 ``(B,)``."""
    rng = torch.Generator().manual_seed(seed)
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
    z = torch.randn(batch_size, latent_dim, generator=rng).to(dtype)
    if not num_classes:
        return (z,)
    return z, torch.randint(0, num_classes, (batch_size,), generator=rng)


def require(*modules: str) -> None:
    """ImportError naming the ``export`` extra unless every module in ``modules`` is installed."""
    missing = [name for name in modules if find_spec(name) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install 'lit-gen[export]'")


def _eval_copy(generator: nn.Module) -> nn.Module:
    """A deep copy of ``generator`` in eval mode on the CPU, without gradients."""
    net = copy.deepcopy(generator).cpu().eval()
    net.requires_grad_(False)
    return net


def _quiet_torchscript() -> None:
    """Silence torch's deprecation warning of ``torch.jit`` and the trace warning of the nets' label check."""
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"lit_gen\.nets\.conditioning")


def _export_onnx(net: nn.Module, inputs: tuple[Tensor, ...], path: Path, opset: int | None) -> None:
    """``torch.onnx.export`` with the dynamo exporter, a dynamic ``batch`` axis and the weights in the file."""
    batch = torch.export.Dim("batch")
    names = ["z", "labels"][: len(inputs)]
    nbytes = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    with warnings.catch_warnings():
        # z and labels share the one `batch` Dim, which the exporter reports as a name it cannot reuse; it is used
        warnings.filterwarnings("ignore", message=r"# The axis name: \w+ will not be used")
        torch.onnx.export(
            net,
            inputs,
            str(path),
            input_names=names,
            output_names=["images"],
            dynamic_shapes=tuple({0: batch} for _ in inputs),
            opset_version=opset,
            dynamo=True,
            external_data=nbytes > INLINE_LIMIT,
            verbose=False,
        )


def _run_exported(path: Path, format: str, inputs: tuple[Tensor, ...]) -> Tensor:
    """The exported file's output for ``inputs``, as a CPU tensor."""
    if not path.is_file():
        raise FileNotFoundError(f"exported file {path} does not exist")
    if format == "torchscript":
        with warnings.catch_warnings():
            _quiet_torchscript()
            loaded = torch.jit.load(str(path), map_location="cpu")
        return loaded(*inputs)
    require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [arg.name for arg in session.get_inputs()]
    if len(names) != len(inputs):
        raise ValueError(f"{path} takes inputs {names} but {len(inputs)} were given: is num_classes right?")
    feed: dict[str, Any] = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
    return torch.from_numpy(session.run(None, feed)[0])
