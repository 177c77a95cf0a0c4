"""Lightning's learning-rate finder (``Tuner(trainer).lr_find``, the ``LearningRateFinder`` callback) and lit_gen's
modules: the autoencoders' ``lr`` hyperparameter, which the finder sets and which overrides the optimizer callable's
rate, and the GAN's refusal, which names what to set instead."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateFinder
from torch.optim import Optimizer


def set_learning_rate(optimizer: Optimizer, lr: float) -> Optimizer:
    """Every parameter group of a freshly built ``optimizer`` at ``lr`` (a scheduler built after it starts there)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return optimizer


def check_lr(lr: float | None, owner: str) -> float | None:
    """``lr`` unless it is not a positive number; ``owner`` names the class in the error, e.g. ``"VAEModule"``."""
    if lr is not None and not lr > 0:
        raise ValueError(f"{owner}(lr=...) must be > 0 (None = the optimizer's own rate), got {lr}")
    return lr


def restart_schedules(trainer: L.Trainer | None, lr: float) -> None:
    """After the finder changed the rate of an already configured fit (the ``LearningRateFinder`` callback runs in
    ``on_fit_start``, after ``configure_optimizers``): the schedulers restart from ``lr`` rather than from the
    callable's rate (their ``base_lrs``, and the groups' ``initial_lr``, as a scheduler built now would have)."""
    if trainer is None:
        return
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr
            if "initial_lr" in group:
                group["initial_lr"] = lr
    for config in trainer.lr_scheduler_configs:
        base_lrs = getattr(config.scheduler, "base_lrs", None)
        if base_lrs is not None:
            config.scheduler.base_lrs = [lr] * len(base_lrs)


def refuse_lr_finder(module: L.LightningModule, stage: str) -> None:
    """Raise, naming the optimizer arguments to set, when a GAN's fit has Lightning's learning-rate finder.

    Called from ``setup``, which runs before the finder (the callback searches in ``on_fit_start``): Lightning's own
    message would ask for a ``model.lr`` field, and with one it would stop at the two optimizers.
    """
    trainer: Any = module._trainer
    if stage != "fit" or trainer is None:
        return
    if any(isinstance(callback, LearningRateFinder) for callback in trainer.callbacks):
        name = type(module).__name__
        raise ValueError(
            f"{name} cannot use Lightning's learning-rate finder (Tuner(trainer).lr_find, the LearningRateFinder "
            "callback): it searches the rate of one optimizer stepped by Lightning, and a GAN steps two by hand, "
            "whose balance matters more than either rate. Remove the finder and set the rates of "
            f"{name}(generator_optimizer=..., discriminator_optimizer=...) (from YAML model.generator_optimizer / "
            "model.discriminator_optimizer with class_path torch.optim.Adam and init_args.lr): e.g. Adam lr 2e-4 "
            "and betas (0.5, 0.999) for both as in DCGAN (the default), or the two time-scale rule (TTUR), e.g. "
            "1e-4 for the generator and 4e-4 for the discriminator"
        )
