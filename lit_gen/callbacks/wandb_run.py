"""wandb as lit-gen's first-class logger: start the run without prompting or hanging, and record the full config.

Without an API key (``wandb login`` or ``WANDB_API_KEY``) wandb would prompt in a terminal and fail elsewhere;
without a network it waits ``init_timeout`` (90 s) and fails. :func:`start_wandb_runs` starts the run offline
instead and says so; ``wandb sync <dir>`` uploads it later.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

OFFLINE_MODES = ("offline", "dryrun", "disabled")


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config (dicts) as flat dotted keys, ``{"model.init_args.loss": "hinge", ...}``: the names sweeps
    use for their parameters. Lists are values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _go_offline(logger: WandbLogger, reason: str) -> None:
    import wandb

    os.environ["WANDB_MODE"] = "offline"  # for processes started from here
    wandb.setup(wandb.Settings(mode="offline"))  # this process: wandb reads its environment only once
    where = os.path.join(logger.save_dir or ".", "wandb", "offline-run-*")
    print(
        f"lit-gen: {reason}; wandb logs offline to {where}. Upload it later with `wandb sync <that directory>`, "
        "or set WANDB_MODE=offline to skip this check",
        flush=True,
    )


def start_wandb_runs(trainer: L.Trainer) -> None:
    """Start the run of every WandbLogger of ``trainer`` now (rank 0), offline when W&B cannot be used.

    Does nothing under ``WANDB_MODE=offline``/``disabled``, for ``WandbLogger(offline=True)`` and when a run exists.
    With no API key configured the run goes offline at once (no prompt); when the server cannot be reached the run
    goes offline after wandb's ``init_timeout`` (``WANDB_INIT_TIMEOUT``, 90 s by default).
    """
    loggers = wandb_loggers(trainer)
    if not loggers or not trainer.is_global_zero:
        return
    import wandb

    if wandb.run is not None or os.environ.get("WANDB_MODE", "").lower() in OFFLINE_MODES:
        return
    if any(getattr(logger, "_offline", False) for logger in loggers):  # WandbLogger(offline=True) sets WANDB_MODE
        return
    if "prompt" in inspect.signature(wandb.login).parameters and not wandb.login(prompt=False, verify=False):
        _go_offline(loggers[0], "no W&B API key is configured (`wandb login` or WANDB_API_KEY)")
    try:
        for logger in loggers:
            _ = logger.experiment
    except wandb.errors.CommError as err:
        _go_offline(loggers[0], f"the W&B server cannot be reached ({str(err).splitlines()[0]})")
        for logger in loggers:
            _ = logger.experiment


def record_config(trainer: L.Trainer, config: dict[str, Any]) -> None:
    """Put the full resolved config into the run config of every WandbLogger, as flat dotted keys (the names the
    sweeps in ``configs/sweeps/`` use, so swept and recorded values share a column). Rank 0 only."""
    flat = flat_config(config)
    for logger in wandb_loggers(trainer):
        logger.experiment.config.update(flat, allow_val_change=True)
