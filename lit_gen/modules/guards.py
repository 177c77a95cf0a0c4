"""Non-finite losses: stop with a message that names the step and the loss, or skip the step."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch import Tensor

NonFinitePolicy = Literal["stop", "skip"]


def check_policy(policy: str) -> str:
    """Validate a ``nonfinite`` argument."""
    if policy not in ("stop", "skip"):
        raise ValueError(f"nonfinite must be 'stop' or 'skip', got {policy!r}")
    return policy


class NonFiniteLossError(FloatingPointError):
    """A loss was NaN or infinite; the weights are still those of the last finite step."""


def loss_is_finite(module: L.LightningModule, name: str, loss: Tensor, policy: str, batch_idx: int) -> bool:
    """True when ``loss`` is finite on every process. Otherwise False under ``policy="skip"``, or raise.

    One host sync per call (and one all-reduce under DDP, so that every process takes the same decision).
    """
    finite = bool(torch.isfinite(loss.detach()).all())
    trainer = module.trainer
    if trainer.world_size > 1:
        finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
    if finite or policy == "skip":
        return finite
    raise NonFiniteLossError(
        f"the {name} is {loss.detach().float().item()} at global step {trainer.global_step} (epoch "
        f"{trainer.current_epoch}, batch {batch_idx}); this step was not applied, so the weights are those of the "
        "last finite step (saved as on_exception.ckpt next to last.ckpt by lit_gen.callbacks.SaveOnException). "
        "Lower the learning rates or add a penalty (gradient_penalty, r1_gamma), or set the module's "
        "nonfinite='skip' (--model.nonfinite=skip) to skip such steps"
    )
