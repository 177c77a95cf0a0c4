"""Opt-in speed settings of the modules' networks: ``torch.compile`` and the channels-last memory format."""

from __future__ import annotations

import torch
from torch import nn


def speed_up(nets: list[nn.Module], compile: bool, channels_last: bool) -> None:
    """Compile ``nets`` in place with ``torch.compile`` (``nn.Module.compile``: the parameter names and so the
    checkpoints stay as they are; compiled once per net) and/or store their 4-D weights channels-last, which
    convolutions on a GPU run faster with under mixed precision (NHWC tensor cores); both off by default.

    Compiling costs tens of seconds on the first steps and pays off on long GPU runs; on a CPU it needs a C++
    compiler. Channels-last weights make the convolutions' outputs channels-last, so the inputs need not change.
    """
    for net in nets:
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if compile and not getattr(net, "_lit_gen_compiled", False):
            net.compile()
            net._lit_gen_compiled = True
