"""An exponential moving average of the generator's weights (and batch-norm statistics), torch's ``AveragedModel``.

Karras et al. 2018 (Progressive GAN, arXiv 1710.10196) and Yazıcı et al. 2019 (arXiv 1806.04498): sampling from an
average of the generator's recent weights removes much of the step-to-step oscillation of GAN training.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from lit_gen.nets.counters import register_counters


def ema_decay_at(step: Tensor | int, decay: float, warmup: int) -> Tensor | float:
    """The decay of update ``step`` (1 for the first average after the initial copy).

    ``min(decay, (1 + step) / (warmup + step))``: with ``warmup=0`` the decay is constant; with ``warmup=10`` it is
    TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` ramp, so the early, poor weights fade out fast.
    """
    if warmup <= 0:
        return decay
    if isinstance(step, Tensor):
        return torch.clamp((1.0 + step) / (warmup + step), max=decay)
    return min(decay, (1.0 + step) / (warmup + step))


def ema_update_fn(decay: float, warmup: int) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """A ``multi_avg_fn`` for ``AveragedModel``: ``ema ← d·ema + (1 - d)·current``, integer buffers copied.

    A ``partial`` of a module-level function, not a closure: the module pickles (``strategy="ddp_spawn"``)."""
    return partial(_ema_update, decay=decay, warmup=warmup)


@torch.no_grad()
def _ema_update(ema: list[Tensor], current: list[Tensor], num_averaged: Tensor, *, decay: float, warmup: int) -> None:
    d = ema_decay_at(num_averaged, decay, warmup)
    for e, c in zip(ema, current, strict=True):
        if e.is_floating_point():
            e.lerp_(c, (1.0 - d).to(e.dtype) if isinstance(d, Tensor) else 1.0 - d)
        else:
            e.copy_(c)  # num_batches_tracked


class GeneratorEMA(AveragedModel):
    """An averaged copy of a generator: parameters and buffers (batch-norm running statistics) are averaged.

    The first :meth:`update_parameters` copies the generator; update ``t ≥ 1`` then applies
    ``ema ← d_t·ema + (1 - d_t)·G`` with ``d_t = ema_decay_at(t, decay, warmup)``. Its state (weights and the update
    count ``n_averaged``) is part of the owning module's ``state_dict``, so checkpoints save and restore it.
    ``n_averaged`` is a counter (:func:`~lit_gen.nets.counters.register_counters`), not a buffer, so that weight
    averaging of the whole LightningModule (Lightning's ``EMAWeightAveraging``) leaves the count exact.

    Args:
        generator: the generator to average (deep-copied).
        decay: per-update decay in [0, 1) (0.999 is common; StyleGAN2 uses a half-life of 10k images).
        warmup: see :func:`ema_decay_at` (0 = constant decay).
    """

    def __init__(self, generator: nn.Module, decay: float = 0.999, warmup: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        if warmup < 0:
            raise ValueError(f"ema_warmup must be >= 0, got {warmup}")
        super().__init__(generator, multi_avg_fn=ema_update_fn(decay, warmup), use_buffers=True)
        self.decay, self.warmup = decay, warmup
        register_counters(self, n_averaged=self.n_averaged)  # AveragedModel's buffer, same state_dict key
        self.requires_grad_(False)  # never trained: only averaged, and only called in eval mode
