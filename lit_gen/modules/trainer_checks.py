"""Trainer options that manual optimization cannot use, refused with the GANModule option that does the same."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import StochasticWeightAveraging


class ManualOptimizationConfigError(ValueError):
    """A Trainer option or callback that Lightning refuses under manual optimization; the message names the module
    option to use instead."""


def check_manual_optimization_trainer(trainer: L.Trainer, module_name: str = "GANModule") -> None:
    """Refuse ``Trainer(gradient_clip_val=...)``, ``Trainer(accumulate_grad_batches=...)`` and the
    ``StochasticWeightAveraging`` callback, naming ``module_name``'s own options.

    Lightning refuses the first two in ``_verify_loop_configurations`` with a message that names no alternative;
    call this earlier, from ``configure_callbacks`` (the only module hook that runs before that check).

    Raises:
        ManualOptimizationConfigError: one line per refused option, each naming the replacement.
    """
    problems = []
    clip = trainer.gradient_clip_val
    if clip is not None and clip > 0:
        problems.append(
            f"Trainer(gradient_clip_val={clip}) cannot clip the gradients of a manually optimized module: unset it "
            f"and use {module_name}(generator_clip_norm={clip}, discriminator_clip_norm={clip}) "
            f"(--model.init_args.generator_clip_norm={clip} --model.init_args.discriminator_clip_norm={clip})"
        )
    accumulate = trainer.accumulate_grad_batches
    if accumulate != 1:
        problems.append(
            f"Trainer(accumulate_grad_batches={accumulate}) does not work with manual optimization: unset it and "
            f"use {module_name}(accumulate_grad_batches={accumulate}) "
            f"(--model.init_args.accumulate_grad_batches={accumulate})"
        )
    if any(isinstance(cb, StochasticWeightAveraging) for cb in trainer.callbacks):  # type: ignore[attr-defined]
        problems.append(
            f"the StochasticWeightAveraging callback averages one optimizer's model and does not work with "
            f"{module_name}'s two: remove it and average the generator with {module_name}(ema_decay=0.999) "
            "(--model.init_args.ema_decay=0.999)"
        )
    if problems:
        raise ManualOptimizationConfigError("; ".join(problems))
