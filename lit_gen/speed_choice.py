"""The speed options that follow the machine: bf16-mixed precision and channels-last networks where the hardware has
native bf16 matrix units, fp32 elsewhere.

A CPU with AMX (``amx_bf16``) or AVX-512 BF16 (``avx512_bf16``) multiplies bf16 matrices several times faster than
fp32 ones (a 2048² matmul on 2 cores: Intel Xeon with AMX 1,778 vs 253 GFLOP/s, AMD EPYC with AVX-512 BF16 209 vs 82);
without them bf16 is emulated and slower than fp32. A CUDA GPU computes in bf16 where it supports it, else in fp16.

No Lightning import here: ``Trainer(precision=lit_gen.auto_precision())`` works with any Trainer, and the CLI and the
modules (``channels_last=None``) share the same rule.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags of x86 CPUs that multiply bf16 matrices natively (oneDNN uses them under autocast)."""

CPUINFO = Path("/proc/cpuinfo")


class SpeedChoice(NamedTuple):
    """What :func:`choose_precision` picked, and why, in one human sentence."""

    precision: str
    channels_last: bool
    reason: str


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux), or None where that file cannot be read."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``; elsewhere ``platform.processor()``), or ``"this
    CPU"``."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or "this CPU"


def native_bf16_flags(flags: Iterable[str] | None = None) -> list[str]:
    """Those of :data:`NATIVE_BF16_FLAGS` the CPU has (``flags``: its feature flags; None = this machine's).

    Where ``/proc/cpuinfo`` cannot be read, torch's own CPUID check of AVX-512 BF16 answers (AMX is then not told
    apart: it comes with AVX-512 BF16 on every CPU that has it).
    """
    if flags is None:
        flags = cpu_flags()
    if flags is None:
        check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private; only where /proc is missing
        return ["avx512_bf16"] if check is not None and check() else []
    present = set(flags)
    return [flag for flag in NATIVE_BF16_FLAGS if flag in present]


def native_bf16(cpu_flags: Iterable[str] | None = None) -> bool:
    """True when the CPU multiplies bf16 matrices natively (``amx_bf16`` or ``avx512_bf16``).

    Args:
        cpu_flags: the CPU's feature flags (as in ``/proc/cpuinfo``); None = this machine's.
    """
    return bool(native_bf16_flags(cpu_flags))


def device_type(accelerator: str | torch.device | None = "auto") -> str:
    """The device type (``"cuda"``, ``"mps"``, ``"cpu"``, ...) that ``Trainer(accelerator=...)`` trains on.

    ``"auto"`` and ``"gpu"`` resolve as Lightning does: a CUDA GPU when there is one, else Apple's MPS, else the CPU
    (``"auto"`` only).
    """
    if isinstance(accelerator, torch.device):
        return accelerator.type
    name = str(accelerator or "auto").lower()
    if name in ("auto", "gpu"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu" if name == "auto" else "cuda"
    return name


def choose_precision(
    accelerator: str | torch.device | None = "auto", cpu_flags: Iterable[str] | None = None
) -> SpeedChoice:
    """The precision and memory format that train fastest on ``accelerator`` without costing range.

    - CUDA GPU: ``"bf16-mixed"`` where ``torch.cuda.is_bf16_supported()``, else ``"16-mixed"``; channels-last on.
    - CPU with AMX or AVX-512 BF16: ``"bf16-mixed"`` with channels-last.
    - any other CPU (bf16 would be emulated, slower than fp32), MPS and other devices: ``"32-true"``, no
      channels-last.

    Args:
        accelerator: what ``Trainer(accelerator=...)`` is given (``"auto"``, ``"cpu"``, ``"gpu"``, ``"cuda"``, ...)
            or a ``torch.device``.
        cpu_flags: the CPU's feature flags; None = this machine's (``/proc/cpuinfo``).

    Returns:
        ``SpeedChoice(precision, channels_last, reason)``, the reason a sentence naming the device and its feature.
    """
    kind = device_type(accelerator)
    if kind == "cuda":
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "the GPU"
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return SpeedChoice("bf16-mixed", True, f"{name} supports bf16: bf16-mixed with channels-last")
        return SpeedChoice("16-mixed", True, f"{name} has no bf16: 16-mixed (fp16 with loss scaling), channels-last")
    if kind == "cpu":
        model = cpu_model()
        found = native_bf16_flags(cpu_flags)
        if found:
            return SpeedChoice("bf16-mixed", True, f"{model} has {' and '.join(found)}: bf16-mixed with channels-last")
        return SpeedChoice(
            "32-true", False, f"{model} has neither amx_bf16 nor avx512_bf16 (bf16 would be emulated, slower): 32-true"
        )
    return SpeedChoice("32-true", False, f"no automatic mixed precision on {kind}: 32-true")


def auto_precision(accelerator: str | torch.device | None = "auto") -> str:
    """``Trainer(precision=lit_gen.auto_precision())``: the precision :func:`choose_precision` picks for this
    machine (``"bf16-mixed"``, ``"16-mixed"`` or ``"32-true"``). Pass the Trainer's ``accelerator`` when it is not
    ``"auto"``.

    The modules' ``channels_last=None`` (their default) then follows the Trainer's precision and device.
    """
    return choose_precision(accelerator).precision


def auto_channels_last(
    precision: str | int | None, device: str | torch.device, cpu_flags: Iterable[str] | None = None
) -> bool:
    """What ``channels_last=None`` resolves to: on when the run computes in bf16/fp16 (``"bf16-mixed"``,
    ``"16-mixed"``, ``"bf16-true"``, ``"16-true"``) on a CUDA GPU, or in bf16 on a CPU with native bf16.

    Args:
        precision: the Trainer's precision (``trainer.precision``).
        device: the device it trains on (``trainer.strategy.root_device``) or its type.
        cpu_flags: the CPU's feature flags; None = this machine's.
    """
    text = str(precision)
    kind = device.type if isinstance(device, torch.device) else str(device)
    if kind == "cuda":
        return text.startswith(("bf16", "16"))
    if kind == "cpu":
        return text.startswith("bf16") and native_bf16(cpu_flags)
    return False
