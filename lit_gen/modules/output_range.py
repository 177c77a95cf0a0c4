"""A generator whose bounded output layer cannot match the data's pixel range: a warning at the start of training."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from lit_gen.modules.common import eval_mode

# output layers with a fixed range, and the option of lit_gen's nets that builds each
BOUNDED: dict[type[nn.Module], tuple[tuple[float, float], str]] = {
    nn.Tanh: ((-1.0, 1.0), "tanh"),
    nn.Sigmoid: ((0.0, 1.0), "sigmoid"),
}
TOLERANCE = 0.05  # share of the data's span by which the ranges' ends may differ


def output_layer(net: nn.Module, *inputs: Any) -> nn.Module | None:
    """The leaf module that runs last in ``net(*inputs)`` (one forward pass without gradients); None if none runs."""
    ran: list[nn.Module] = []
    leaves = [m for m in net.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(lambda m, args, out: ran.append(m)) for m in leaves]
    try:
        with torch.no_grad():
            net(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return ran[-1] if ran else None


def range_mismatch(layer: nn.Module | None, value_range: tuple[float, float]) -> str | None:
    """A warning text when ``layer`` bounds the output to a range other than ``value_range``; else None."""
    found = next((v for cls, v in BOUNDED.items() if isinstance(layer, cls)), None)
    if found is None:
        return None
    (out_low, out_high), name = found
    low, high = value_range
    tolerance = TOLERANCE * (high - low)
    if abs(out_low - low) <= tolerance and abs(out_high - high) <= tolerance:
        return None
    fits = next((n for (lo, hi), n in BOUNDED.values() if abs(lo - low) <= tolerance and abs(hi - high) <= tolerance),
                None)  # fmt: skip
    build = f"build the generator with output_activation='{fits}'" if fits else "use a generator whose output fits"
    return (
        f"the generator's output layer is {name} (values in [{out_low:g}, {out_high:g}]) but the data's value_range "
        f"is [{low:g}, {high:g}]: the discriminator tells them apart by range alone. Set value_range=({out_low:g}, "
        f"{out_high:g}) on the DataModule (--data.value_range=[{out_low:g},{out_high:g}]), or {build}"
    )


def warn_on_range_mismatch(
    generator: nn.Module, z: Tensor, labels: Tensor | None, value_range: tuple[float, float] | None
) -> str | None:
    """Warn (and return the text) when ``generator``'s last layer is tanh or sigmoid and ``value_range`` is not
    that layer's range. Runs ``generator`` once in eval mode on ``z`` (and ``labels``); draws no random numbers."""
    if value_range is None:
        return None
    weight = next(generator.parameters(), None)
    if weight is not None and weight.is_floating_point():
        z = z.to(weight.dtype)  # bf16-true, 64-true: the weights were converted, the noise was not
    try:
        with eval_mode(generator):
            layer = output_layer(generator, *((z,) if labels is None else (z, labels)))
    except (RuntimeError, ValueError, TypeError):
        return None  # advisory only: a generator that fails here fails in the first step, with its own traceback
    message = range_mismatch(layer, value_range)
    if message is not None:
        warnings.warn(message, stacklevel=2)
    return message
