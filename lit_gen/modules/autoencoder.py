"""What the automatic-optimization autoencoders (:class:`~lit_gen.modules.vae.VAEModule`,
:class:`~lit_gen.modules.vqvae.VQVAEModule`) share: the optimizer callables and the ``lr`` the learning-rate finder
sets, flushing denormals, the data's pixel range (kept in checkpoints), the non-finite policy under DDP and the
pixel-range checks of their likelihoods."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lit_gen.modules.evaluation import data_value_range
from lit_gen.modules.guards import check_policy
from lit_gen.modules.learning_rate import check_lr, restart_schedules, set_learning_rate
from lit_gen.modules.resume import ResumableRNG
from lit_gen.modules.vae_checks import check_unit_range, metric_value_range
from lit_gen.nets.counters import counter_state

RANGE_KEY = "lit_gen_value_range"


def default_adam(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam(lr=1e-3), the usual VAE default."""
    return torch.optim.Adam(params, lr=1e-3)


class AutoencoderModule(ResumableRNG):
    """Base of the autoencoder modules; subclasses set ``likelihood`` and call :meth:`init_training`."""

    likelihood: str

    def init_training(
        self,
        optimizer: OptimizerCallable | None,
        lr_scheduler: LRSchedulerCallable | None,
        flush_denormal: bool,
        nonfinite: str,
        lr: float | None = None,
    ) -> None:
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self._lr = check_lr(lr, type(self).__name__)
        self.flush_denormal = flush_denormal
        self.nonfinite = check_policy(nonfinite)
        self.pixel_range: tuple[float, float] = (0.0, 1.0)  # the data's value_range: set at setup, in checkpoints

    @property
    def lr(self) -> float | None:
        """The learning rate of every parameter group, overriding the ``optimizer`` callable's (None = its own).

        Lightning's learning-rate finder sets it (with ``hparams["lr"]``, so checkpoints keep it); set during a fit,
        the configured optimizer and its schedulers continue from the new rate.
        """
        return self._lr

    @lr.setter
    def lr(self, value: float | None) -> None:
        self._lr = check_lr(value, type(self).__name__)
        if value is not None:
            restart_schedules(self._trainer, value)

    def setup(self, stage: str) -> None:
        if self.flush_denormal:
            torch.set_flush_denormal(True)
        value_range = data_value_range(self)
        if value_range is not None:
            self.pixel_range = value_range

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.nonfinite == "skip" and self.trainer.world_size > 1:
            raise ValueError(
                f"{type(self).__name__}(nonfinite='skip') cannot run on several processes: Lightning refuses to skip "
                "a step in distributed automatic optimization; use nonfinite='stop' (the default) under DDP"
            )

    def configure_optimizers(self) -> Any:
        opt = (self.optimizer_factory or default_adam)(self.parameters())
        if self.lr is not None:
            set_learning_rate(opt, self.lr)
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": self.scheduler_factory(opt)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[RANGE_KEY] = list(self.pixel_range)
        checkpoint["state_dict"].update(counter_state(self))  # WeightAveraging's copy holds counters of its start

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if RANGE_KEY in checkpoint:
            low, high = checkpoint[RANGE_KEY]
            self.pixel_range = (float(low), float(high))

    def check_pixel_range(self, x: Tensor, alternative: str) -> None:
        """On the first batch only: a Bernoulli likelihood refuses pixels outside [0, 1], naming ``alternative``."""
        if self.likelihood == "bernoulli" and not getattr(self, "_range_checked", False):
            check_unit_range(x, alternative)
            self._range_checked = True

    def _value_range(self) -> tuple[float, float]:
        """The pixel range of the test metrics (MSE, PSNR)."""
        return metric_value_range(self, self.likelihood)
