"""The GAN's two optimizers as Lightning optimizer configs, named for ``LearningRateMonitor``.

Lightning's ``LearningRateMonitor`` names an optimizer by its class (``lr-Adam``, ``lr-Adam-1``) unless its scheduler
config has a ``name``, and logs a scheduler every epoch unless its config declares ``interval="step"`` (Lightning
keeps that key under manual optimization for exactly this use). Without a scheduler, only a parameter group's
``name`` reaches the logged key (``lr-Adam/generator``).
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

PLAYERS = ("generator", "discriminator")


def player_configs(optimizers: tuple[Optimizer, Optimizer], schedulers: tuple[Any, Any], interval: str) -> list[dict]:
    """``[{"optimizer": ..., "lr_scheduler": {...}}, ...]`` for the generator and the discriminator.

    Args:
        optimizers: the generator's and the discriminator's optimizer.
        schedulers: ``optimizer -> LRScheduler`` factories (or None) in the same order.
        interval: ``"step"`` or ``"epoch"``: when the GAN steps its schedulers (and so when to log their rates).

    Returns:
        The configs: a scheduler's is named ``lr-generator`` / ``lr-discriminator``; an optimizer without one gets
        its parameter groups named ``generator`` / ``discriminator`` (when they have no name yet).
    """
    configs: list[dict] = []
    for player, opt, factory in zip(PLAYERS, optimizers, schedulers, strict=True):
        if factory is None:
            if len(opt.param_groups) == 1:
                opt.param_groups[0].setdefault("name", player)
            configs.append({"optimizer": opt})
        else:
            scheduler = {"scheduler": factory(opt), "interval": interval, "name": f"lr-{player}"}
            configs.append({"optimizer": opt, "lr_scheduler": scheduler})
    return configs
