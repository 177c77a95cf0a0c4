"""Speed settings of the modules' networks: ``torch.compile`` (opt-in) and the channels-last memory format (automatic
under bf16/fp16 on GPUs and on CPUs with native bf16, see :mod:`lit_gen.speed_choice`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lit_gen.speed_choice import auto_channels_last


def speed_up(nets: list[nn.Module], compile: bool, channels_last: bool) -> None:
    """Compile ``nets`` in place with ``torch.compile`` (``nn.Module.compile``: the parameter names and so the
    checkpoints stay as they are; compiled once per net) and/or store their 4-D weights channels-last, which
    convolutions run faster with under mixed precision (NHWC tensor cores on a GPU, oneDNN's bf16 kernels on a CPU).
    Nets without 4-D weights (MLPs) are left as they are.

    Compiling costs tens of seconds on the first steps and pays off on long GPU runs; on a CPU it needs a C++
    compiler. Channels-last weights make the convolutions' outputs channels-last, so the inputs need not change
    (measured on a CPU: channels-last batches as well gave the same images/s within noise, and 1-channel images are
    laid out the same either way).
    """
    for net in nets:
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if compile and not getattr(net, "_lit_gen_compiled", False):
            net.compile()
            net._lit_gen_compiled = True


def use_channels_last(requested: bool | None, trainer: Any) -> bool:
    """A module's ``channels_last`` setting for this run: True/False as given; None (automatic) = on when the
    trainer computes in bf16/fp16 on a CUDA GPU or in bf16 on a CPU with native bf16 (AMX / AVX-512 BF16), where
    the convolutions run faster channels-last (:func:`lit_gen.speed_choice.auto_channels_last`); off without a
    trainer."""
    if requested is not None:
        return bool(requested)
    if trainer is None:
        return False
    return auto_channels_last(trainer.precision, trainer.strategy.root_device)
