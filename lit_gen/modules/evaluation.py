"""The sample evaluation both modules share: a :class:`~lit_gen.metrics.SampleEvaluation` fed real and generated
batches in ``test_step`` and logged as ``test/<name>`` at the end of the test epoch; optionally also on the validation
split every few epochs during ``fit`` (``val/<name>``), so that sweeps and checkpoints can use it."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.modules.common import labels_of


def data_value_range(module: L.LightningModule) -> tuple[float, float] | None:
    """The ``value_range`` of the trainer's DataModule, None without one."""
    trainer = module._trainer
    value_range = getattr(trainer.datamodule, "value_range", None) if trainer is not None else None
    return (float(value_range[0]), float(value_range[1])) if value_range is not None else None


class EvaluatesSamples(L.LightningModule):
    """Holds the optional evaluation outside the module tree: its feature network (up to 90 MB for Inception) is
    neither saved in checkpoints nor handed to the optimizers."""

    def set_evaluation(self, evaluation: SampleEvaluation | None, every_n_epochs: int = 0) -> None:
        """``every_n_epochs``: also compute the metrics on the validation split after every n-th training epoch and
        the last one (0 = at test time only). ``trainer.validate`` computes them whenever it is not 0."""
        if every_n_epochs < 0:
            raise ValueError(f"evaluate_every_n_epochs must be >= 0 (0 = test time only), got {every_n_epochs}")
        self._evaluation = (evaluation,) if evaluation is not None else ()
        self._evaluate_every_n_epochs = every_n_epochs
        self._evaluating_val = False

    @property
    def evaluation(self) -> SampleEvaluation | None:
        return self._evaluation[0] if getattr(self, "_evaluation", ()) else None

    def evaluating(self, stage: str) -> bool:
        """Whether the current ``stage`` (``"val"`` or ``"test"``) epoch feeds the sample evaluation."""
        if self.evaluation is None:
            return False
        return stage == "test" or (stage == "val" and getattr(self, "_evaluating_val", False))

    def _start_evaluation(self) -> None:
        assert self.evaluation is not None
        self.evaluation.to(self.device)
        self.evaluation.reset()
        self.evaluation.value_range = self.evaluation.given_value_range or data_value_range(self)

    def _log_evaluation(self, stage: str) -> None:
        assert self.evaluation is not None
        values = self.evaluation.compute()  # synced across processes by torchmetrics
        self.log_dict({f"{stage}/{name}": value.float() for name, value in values.items()}, sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        every, trainer = getattr(self, "_evaluate_every_n_epochs", 0), self.trainer
        self._evaluating_val = False
        if self.evaluation is None or not every or trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1  # the same decision on every process: no collective is left waiting
        validating = trainer.state.fn == TrainerFn.VALIDATING  # `lit-gen validate`
        self._evaluating_val = validating or epoch % every == 0 or epoch == trainer.max_epochs
        if self._evaluating_val:
            self._start_evaluation()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if getattr(self, "_evaluating_val", False):
            self._log_evaluation("val")
            self._evaluating_val = False

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        if self.evaluation is not None:
            self._start_evaluation()

    def update_evaluation(self, real: Tensor, fake: Tensor, batch: Any) -> None:
        if self.evaluation is not None:
            self.evaluation.update(real, fake, labels_of(batch))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.evaluation is not None:
            self._log_evaluation("test")
