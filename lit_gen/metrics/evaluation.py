"""What the modules call at test time: ``update(real, fake, labels)`` per batch, ``compute()`` once per epoch.

An evaluation is passed to ``GANModule(evaluation=...)`` / ``VAEModule(evaluation=...)`` (from YAML:
``model.evaluation.class_path``); the module feeds it the real test batch and as many generated samples, and logs
what ``compute`` returns as ``test/<name>``. Its torchmetrics states are synced across processes by torchmetrics.
"""

from __future__ import annotations

from torch import Tensor, nn

from lit_gen.metrics.mixtures import MixtureName, ModeCoverage


class SampleEvaluation(nn.Module):
    """Base class. ``value_range`` is the pixel range of the data: ``given_value_range`` if set, else the module
    fills in its DataModule's at the start of every test epoch."""

    value_range: tuple[float, float] | None = None
    given_value_range: tuple[float, float] | None = None

    def update(self, real: Tensor, fake: Tensor, labels: Tensor | None = None) -> None:
        """``real`` and ``fake`` are ``(B, *data_shape)`` in the data's range; ``labels (B,)`` of ``real`` if known."""
        raise NotImplementedError

    def compute(self) -> dict[str, Tensor]:
        """Scalars by name, synced across processes."""
        raise NotImplementedError

    def reset(self) -> None:
        for child in self.children():
            if hasattr(child, "reset"):
                child.reset()


class MixtureQuality(SampleEvaluation):
    """PacGAN's 2D protocol on the generated points: ``modes``, ``high_quality`` share, ``reverse_kl``.

    Use it with ``MixtureDataModule`` of the same ``mixture``, whose test split holds PacGAN's 2,500 points (one
    generated point is scored per real point).

    Args:
        mixture: ``"ring"`` (8 modes) or ``"grid"`` (25 modes).
    """

    def __init__(self, mixture: MixtureName = "ring") -> None:
        super().__init__()
        self.mixture = mixture
        self.coverage = ModeCoverage(mixture)

    def update(self, real: Tensor, fake: Tensor, labels: Tensor | None = None) -> None:
        self.coverage.update(fake)

    def compute(self) -> dict[str, Tensor]:
        return self.coverage.compute()
