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


def uses_fp16(trainer: L.Trainer) -> bool:
    """True when the trainer computes in float16 (``precision="16-mixed"`` or ``"16-true"``, GradScaler or not)."""
    return str(trainer.precision).startswith("16")


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
    if uses_fp16(trainer):
        # The loss's value never depends on the GradScaler's scale (only its gradients do, and the scaler already
        # skips steps with non-finite gradients and lowers its scale): a non-finite loss is an fp16 range problem.
        advice = (
            f"the run computes in float16 (precision={trainer.precision!r}), whose largest value is 65504: train with "
            "precision='bf16-mixed' (same speed on recent GPUs, float32's range) or '32-true' "
            "(Trainer(precision=...), --trainer.precision); if the loss is non-finite in 32-bit too, lower the "
            "learning rates"
        )
    else:
        advice = "Lower the learning rates or add a penalty (gradient_penalty, r1_gamma)"
    raise NonFiniteLossError(
        f"the {name} is {loss.detach().float().item()} at global step {trainer.global_step} (epoch "
        f"{trainer.current_epoch}, batch {batch_idx}); this step was not applied, so the weights are those of the "
        "last finite step (saved as on_exception.ckpt next to last.ckpt by lit_gen.callbacks.SaveOnException). "
        f"{advice}, or set the module's nonfinite='skip' (--model.nonfinite=skip) to skip such steps"
    )
