"""Pieces both LightningModules share: hyperparameter saving, optimizer defaults, batch unpacking."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor, nn


def object_args_to_ignore(**objects: Any) -> list[str]:
    """Names of nets/optimizers passed as Python objects, which ``save_hyperparameters`` must not pickle.

    Under LightningCLI the hyperparameters are the config (``class_path`` dicts), so nothing is ignored and
    ``load_from_checkpoint(path)`` rebuilds the nets from it. From Python, objects are left out and have to be passed
    to ``load_from_checkpoint(path, generator=..., ...)`` again; ``None`` (the built-in defaults) is kept.
    """
    if _given_hyperparameters.get() is not None:
        return []
    return [name for name, value in objects.items() if value is not None]


def images_of(batch: Any) -> Tensor:
    """The image tensor of a batch that is either ``images`` or ``(images, labels, ...)``."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, Tensor) or batch.dim() < 2:
        raise ValueError(f"expected a batch of images (B, C, H, W) or (images, labels), got {type(batch).__name__}")
    return batch


def labels_of(batch: Any) -> Tensor | None:
    """The labels of an ``(images, labels, ...)`` batch, None for a bare image batch."""
    if isinstance(batch, (tuple, list)) and len(batch) > 1 and isinstance(batch[1], Tensor):
        return batch[1]
    return None


def required_labels(batch: Any, num_classes: int, model: str) -> Tensor | None:
    """The labels of a batch for a conditional model (``num_classes > 0``; an error naming the fix without them),
    None for an unconditional one. ``model`` names it in the error, e.g. ``"GAN"``."""
    if not num_classes:
        return None
    labels = labels_of(batch)
    if labels is None:
        raise ValueError(
            f"a conditional {model} (num_classes > 0) needs (images, labels) batches but the data has no labels: use a "
            "labelled DataModule, or build the nets with num_classes=0"
        )
    return labels


def shape_text(shape: Iterable[int]) -> str:
    """``(1, 28, 28)`` -> ``'1×28×28'``."""
    return "×".join(str(s) for s in shape)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block; its previous mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def eval_rng(module: L.LightningModule, batch_idx: int) -> torch.Generator:
    """A generator for evaluation and prediction noise, seeded by the batch index and the process rank."""
    trainer = module._trainer
    rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
    return torch.Generator(device=module.device).manual_seed(batch_idx * world + rank)
