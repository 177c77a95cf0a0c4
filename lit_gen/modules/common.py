"""Pieces both LightningModules share: hyperparameter saving, optimizer defaults, batch unpacking."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor, nn

from lit_gen.modules.monitored import monitor_reads_this_step
from lit_gen.modules.recorded_objects import instantiator_keys, record_objects


def object_args_to_ignore(**objects: Any) -> list[str]:
    """Names of nets/optimizers passed as Python objects, which ``save_hyperparameters`` must not pickle.

    Under LightningCLI the hyperparameters are the config (``class_path`` dicts), so nothing is ignored. From Python,
    objects are left out of Lightning's own collection (:func:`save_init_hyperparameters` records them as configs
    instead); ``None`` (the built-in defaults) is kept.
    """
    if _given_hyperparameters.get() is not None:
        return []
    return [name for name, value in objects.items() if value is not None]


def save_init_hyperparameters(module: L.LightningModule, **objects: Any) -> None:
    """``module.save_hyperparameters()`` for the ``__init__`` that calls it, with the arguments passed as objects
    (nets, optimizer/scheduler callables, evaluations) recorded as LightningCLI records them: ``class_path`` +
    ``init_args`` dicts, with ``_instantiator`` (Lightning's ``instantiate_module``) and ``_class_path``, so that
    ``load_from_checkpoint(path)`` rebuilds them from the path alone, as for ``lit-gen`` checkpoints. An object whose
    arguments cannot be known is recorded as its class with a note, and loading asks for it again by name
    (:func:`~lit_gen.modules.recorded_objects.record_argument`).

    Args:
        module: the module in its ``__init__``.
        objects: the arguments that may be objects, by name.
    """
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    module.save_hyperparameters(ignore=object_args_to_ignore(**objects), frame=caller)
    if _given_hyperparameters.get() is not None:
        return
    recorded = record_objects(objects)
    if recorded:
        # a second call merges into the hyperparameters (and their initial copy, which the loggers write)
        module.save_hyperparameters(recorded | instantiator_keys(type(module)), frame=caller)


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


def logs_this_step(module: L.LightningModule, pending_optimizer_steps: int = 0) -> bool:
    """Whether a training step's secondary values are worth ``self.log``: the loggers write step values only every
    ``log_every_n_steps`` batches (Lightning's own test), and ``callback_metrics`` should hold the values of an epoch's
    last batch, of the run's last step and of the steps where a callback that monitors a ``train/...`` key reads it
    (``monitored.monitor_reads_this_step``). Each ``self.log`` key costs about 0.4 ms on a CPU (Lightning moves its
    metric state to the value's device), 8 % of the default VAE's step when five keys were logged every step.

    Args:
        module: the module in ``training_step``.
        pending_optimizer_steps: optimizer steps this training step still makes after the call (1 for automatic
            optimization, 0 when a manual-optimization module logs after stepping), to spot the last step of
            ``max_steps``.
    """
    trainer = module._trainer
    connector = getattr(trainer, "_logger_connector", None)
    if trainer is None or connector is None or connector.should_update_logs or trainer.fast_dev_run:
        return True
    if trainer.is_last_batch or 0 <= trainer.max_steps <= trainer.global_step + pending_optimizer_steps:
        return True
    return monitor_reads_this_step(trainer, pending_optimizer_steps)  # e.g. ModelCheckpoint(every_n_train_steps=k)


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
