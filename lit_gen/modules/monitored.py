"""Which training steps a callback that monitors a logged ``train/...`` value will read it on.

The modules log their training values sparsely (on the loggers' steps, see ``common.logs_this_step``). A callback
that monitors one of them reads ``trainer.callback_metrics`` on its own schedule: without a value logged on that step
Lightning's ``ModelCheckpoint(monitor=..., every_n_train_steps=k)`` defers the save to the end of validation, or saves
a value from an older step. This module tells the modules when to log anyway.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

TRAIN_PREFIX = "train/"
#: A time-based checkpoint's value is logged on every step of the last tenth of its interval: the check runs after the
#: step, so a step must not be longer than this share of the interval for its value to be the fresh one.
TIME_MARGIN = 0.1


def monitor_reads_this_step(trainer: Any, pending_optimizer_steps: int) -> bool:
    """Whether a callback that monitors a ``train/...`` key will read ``callback_metrics`` after this training step.

    Covered: ``ModelCheckpoint(monitor=..., every_n_train_steps=k)`` (it checks ``global_step % k`` after the batch;
    under manual optimization ``global_step`` counts every optimizer step, which a module that logs after stepping
    sees already), ``ModelCheckpoint(monitor=..., train_time_interval=...)`` (automatic optimization only: Lightning
    ignores the interval under manual optimization) and any ``ModelCheckpoint``/``EarlyStopping`` on a train key
    that runs after a validation inside the epoch (``val_check_interval`` given as a fraction or a batch count). The
    end of an epoch and of ``max_steps`` are the caller's business (it always logs there).

    Args:
        trainer: the running ``Trainer``.
        pending_optimizer_steps: optimizer steps the training step still makes after the call (1 for automatic
            optimization, where ``global_step`` advances after ``training_step`` returns; 0 after manual stepping).
    """
    checkpoints = [cb for cb in trainer.checkpoint_callbacks if _monitors_train_key(cb)]
    stoppers = [cb for cb in trainer.early_stopping_callbacks if _monitors_train_key(cb)]
    if not checkpoints and not stoppers:
        return False
    step = trainer.global_step + pending_optimizer_steps
    for cb in checkpoints:
        every = getattr(cb, "_every_n_train_steps", 0) or 0  # read only: ModelCheckpoint has no public property
        if every > 0 and step % every == 0:
            return True
        interval = getattr(cb, "_train_time_interval", None)
        last = getattr(cb, "_last_time_checked", None)
        # Lightning 2.6 checks the interval under automatic optimization only (its manual branch never resets the
        # clock, so logging there would mean every step once the interval has passed)
        timed = interval is not None and last is not None and trainer.lightning_module.automatic_optimization
        if timed and time.monotonic() - last >= (1 - TIME_MARGIN) * interval.total_seconds():
            return True
    return _validates_after_this_batch(trainer)


def _monitors_train_key(callback: ModelCheckpoint | EarlyStopping) -> bool:
    monitor = callback.monitor
    return isinstance(monitor, str) and monitor.startswith(TRAIN_PREFIX)


def _validates_after_this_batch(trainer: Any) -> bool:
    """Whether validation runs inside the epoch after this batch (``val_check_interval`` < one epoch), the same test
    as Lightning's training epoch loop for batch-counted intervals."""
    every = trainer.val_check_batch
    if not isinstance(every, int) or every <= 0 or not trainer.enable_validation:
        return False
    epoch_loop = trainer.fit_loop.epoch_loop
    index = epoch_loop.total_batch_idx if trainer.check_val_every_n_epoch is None else epoch_loop.batch_idx
    if trainer.check_val_every_n_epoch and (trainer.current_epoch + 1) % trainer.check_val_every_n_epoch:
        return False
    return (index + 1) % every == 0
