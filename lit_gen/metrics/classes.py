"""Class coverage of generated samples, the Stacked-MNIST measure (Metz et al. 2016, arXiv 1611.02163; VEEGAN,
arXiv 1705.07761): a classifier labels the samples, and the label histogram is compared with the data's."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ClassCoverage(Metric):
    """Counts the classifier's labels of generated samples and the true labels of real ones.

    ``compute`` returns ``classes`` (labels given to at least one sample), ``class_kl``
    (KL(generated label histogram || real label histogram), nats) and ``confident`` (share of samples whose top
    softmax probability is at least ``confidence``).

    Args:
        num_classes: number of labels.
        confidence: softmax threshold of a confident sample.
    """

    full_state_update = False

    def __init__(self, num_classes: int = 10, confidence: float = 0.9, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if not 0 < confidence <= 1:
            raise ValueError(f"confidence must be in (0, 1], got {confidence}")
        self.num_classes, self.confidence = num_classes, confidence
        self.add_state("fake_counts", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("real_counts", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("confident", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, fake_logits: Tensor, real_labels: Tensor) -> None:
        """``fake_logits (M, num_classes)`` of generated samples; ``real_labels (N,)`` of the real batch."""
        if real_labels.numel() and (real_labels.min() < 0 or real_labels.max() >= self.num_classes):
            raise ValueError(
                f"class coverage: real labels span [{int(real_labels.min())}, {int(real_labels.max())}] but the "
                f"classifier has {self.num_classes} classes; use a classifier trained on this data's labels"
            )
        probs = fake_logits.detach().float().softmax(1)
        top, labels = probs.max(1)
        self.fake_counts += torch.bincount(labels, minlength=self.num_classes)
        self.real_counts += torch.bincount(real_labels.long().flatten(), minlength=self.num_classes)
        self.confident += (top >= self.confidence).sum()

    def compute(self) -> dict[str, Tensor]:
        fake = self.fake_counts.double() / self.fake_counts.sum().clamp(min=1)
        real = self.real_counts.double() / self.real_counts.sum().clamp(min=1)
        kl = torch.where(fake > 0, fake * (fake / real.clamp(min=1e-12)).log(), torch.zeros_like(fake)).sum()
        return {
            "classes": (self.fake_counts > 0).sum().double(),
            "class_kl": kl,
            "confident": self.confident.double() / self.fake_counts.sum().clamp(min=1),
        }
