"""Integer training state (counters, flags) kept out of what weight averaging averages.

torch's :class:`~torch.optim.swa_utils.AveragedModel` with ``use_buffers=True`` (behind Lightning's
``WeightAveraging`` and ``EMAWeightAveraging`` callbacks) averages every buffer of a module, integer counters
included, and fails on bool buffers; the callbacks then copy the averages back into the module (during validation
and when training ends). State registered here is a plain tensor attribute on the CPU, not a buffer, so neither the
averaging nor those copies see it, while the module's ``state_dict`` still holds it under the key a buffer of that
name would have: checkpoints written when it was a buffer load unchanged, and new ones read the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

COUNTERS_ATTR = "_counter_names"


def register_counters(module: nn.Module, **initial: Tensor) -> None:
    """Set ``module.<name> = initial[name]`` (moved to the CPU) as state saved and loaded with the ``state_dict``.

    Update the tensors in place (``module.steps += 1``, ``.fill_``, ``.copy_``), so that the registered object stays.
    A name already registered as a buffer (e.g. by a parent class) is turned into a counter.

    Args:
        module: the module that owns the state.
        initial: name -> initial value (any dtype and shape; e.g. ``torch.zeros((), dtype=torch.long)``).
    """
    names = tuple(getattr(module, COUNTERS_ATTR, ())) + tuple(initial)
    for name, value in initial.items():
        if name in dict(module.named_buffers(recurse=False)):
            delattr(module, name)  # nn.Module's attribute deletion unregisters the buffer
        setattr(module, name, value.detach().to("cpu").clone())  # a tensor that is not a buffer: a plain attribute
    first = not hasattr(module, COUNTERS_ATTR)
    setattr(module, COUNTERS_ATTR, names)
    if first:
        module.register_state_dict_post_hook(_save_counters)
        module.register_load_state_dict_pre_hook(_load_counters)


def counter_state(module: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """``(state_dict key, value)`` of every counter of ``module`` and its submodules."""
    for prefix, sub in module.named_modules():
        for name in getattr(sub, COUNTERS_ATTR, ()):
            yield (f"{prefix}.{name}" if prefix else name), getattr(sub, name).detach().clone()


def _save_counters(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for name in getattr(module, COUNTERS_ATTR, ()):
        state_dict[prefix + name] = getattr(module, name).detach().clone()


def _load_counters(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    for name in getattr(module, COUNTERS_ATTR, ()):
        value = state_dict.pop(prefix + name, None)  # popped: the module has no parameter or buffer of that name
        current: Tensor = getattr(module, name)
        if value is None:
            if strict:
                missing_keys.append(prefix + name)
        elif value.shape != current.shape:
            error_msgs.append(
                f"size mismatch for {prefix + name}: copying a param with shape {tuple(value.shape)} from checkpoint, "
                f"the shape in current model is {tuple(current.shape)}."
            )
        else:
            with torch.no_grad():
                current.copy_(value)


__all__ = ["counter_state", "register_counters"]
