"""The test-time evaluation both modules share: a :class:`~lit_gen.metrics.SampleEvaluation` fed real and generated
batches in ``test_step`` and logged as ``test/<name>`` at the end of the test epoch."""

from __future__ import annotations

from typing import Any

import lightning as L
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

    def set_evaluation(self, evaluation: SampleEvaluation | None) -> None:
        self._evaluation = (evaluation,) if evaluation is not None else ()

    @property
    def evaluation(self) -> SampleEvaluation | None:
        return self._evaluation[0] if getattr(self, "_evaluation", ()) else None

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        if self.evaluation is not None:
            self.evaluation.to(self.device)
            self.evaluation.reset()
            self.evaluation.value_range = self.evaluation.given_value_range or data_value_range(self)

    def update_evaluation(self, real: Tensor, fake: Tensor, batch: Any) -> None:
        if self.evaluation is not None:
            self.evaluation.update(real, fake, labels_of(batch))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.evaluation is not None:
            values = self.evaluation.compute()  # synced across processes by torchmetrics
            self.log_dict({f"test/{name}": value.float() for name, value in values.items()}, sync_dist=True)
