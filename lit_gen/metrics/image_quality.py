"""Fréchet distance, KID, precision/recall, density/coverage and class coverage of generated images, on features of
a digit classifier (default), Inception v3, or any network."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from lit_gen.metrics.classes import ClassCoverage
from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.metrics.features import (
    ClassifierFeatures,
    InceptionFeatures,
    check_inception_weights,
    classifier_for_shape,
    load_classifier,
)
from lit_gen.metrics.prdc import PrecisionRecall


class PassThrough(nn.Module):
    """Hands precomputed features to torchmetrics' FID/KID, so the feature network runs once per batch."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


class FrozenFeatures(nn.Module):
    """A user's feature network, kept in eval mode without gradients (the evaluation is outside the LightningModule,
    so ``trainer.test`` does not switch it to eval mode)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        if hasattr(net, "num_features"):
            self.num_features = net.num_features

    def train(self, mode: bool = True) -> FrozenFeatures:
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageQuality(SampleEvaluation):
    """Sample quality of generated images against real ones, all on one feature space.

    Logged names: ``fd`` (Fréchet distance, torchmetrics' FID on these features; "FID" with Inception, the Fréchet
    classifier distance with the classifier), ``kid`` and ``kid_std`` (torchmetrics' KID), ``precision``, ``recall``,
    ``density``, ``coverage`` (k-NN balls), and with the classifier ``classes``, ``class_kl``, ``confident``.

    Args:
        feature: ``"classifier"`` (a shipped LeNet-sized digit classifier, works offline), ``"inception"``
            (torchmetrics' Inception v3, 2048-d; needs its weights file), or an ``nn.Module`` mapping images in [0, 1]
            ``(B, C, H, W)`` to ``(B, F)``.
        classifier: ``"digits"``, ``"mnist_sample"`` or the path of a trained classifier; default: the shipped one
            whose image shape matches the data.
        inception_weights: path of the Inception weights file (else ``$LIT_GEN_INCEPTION_WEIGHTS`` or torch hub).
        value_range: pixel range of the images; default: the DataModule's ``value_range``.
        k: neighbours of precision/recall/density/coverage.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size (lowered, with a warning, to half the sample count when fewer samples exist).
        confidence: softmax threshold of a confident sample, for class coverage.
    """

    def __init__(
        self,
        *,
        feature: Literal["classifier", "inception"] | nn.Module = "classifier",
        classifier: str | None = None,
        inception_weights: str | None = None,
        value_range: tuple[float, float] | None = None,
        k: int = 5,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        confidence: float = 0.9,
    ) -> None:
        super().__init__()
        if isinstance(feature, str) and feature not in ("classifier", "inception"):
            raise ValueError(f"unknown feature {feature!r}; choose 'classifier', 'inception' or pass an nn.Module")
        self.feature, self.classifier = feature, classifier
        self.inception_weights = inception_weights
        self.given_value_range = tuple(value_range) if value_range is not None else None
        self.value_range = self.given_value_range  # type: ignore[assignment]
        self.k, self.kid_subsets, self.kid_subset_size = k, kid_subsets, kid_subset_size
        self.confidence = confidence
        self.extractor: nn.Module | None = None  # built at the first batch, when the image shape is known
        if feature == "inception":
            check_inception_weights(inception_weights)  # a wrong path fails now; a failed download at the first batch

    def _build(self, image_shape: tuple[int, ...]) -> None:
        if isinstance(self.feature, nn.Module):
            extractor = FrozenFeatures(self.feature)
        elif self.feature == "inception":
            extractor = InceptionFeatures(self.inception_weights)
        else:
            net, _ = load_classifier(self.classifier or classifier_for_shape(image_shape))
            if tuple(net.image_shape) != tuple(image_shape):
                raise ValueError(
                    f"classifier {self.classifier!r} takes images of shape {net.image_shape}, the data is "
                    f"{tuple(image_shape)}; pick the classifier trained on this data"
                )
            extractor = ClassifierFeatures(net)
        num_features = getattr(extractor, "num_features", None)
        if num_features is None:
            device = next(iter(extractor.parameters()), torch.empty(0)).device
            with torch.no_grad():
                num_features = extractor(torch.rand(2, *image_shape, device=device)).shape[-1]
        self.extractor = extractor
        self.fid = FrechetInceptionDistance(feature=PassThrough(num_features), reset_real_features=True)
        self.kid = KernelInceptionDistance(
            feature=PassThrough(num_features), subsets=self.kid_subsets, subset_size=self.kid_subset_size
        )
        self.prdc = PrecisionRecall(self.k)
        if isinstance(extractor, ClassifierFeatures):
            self.classes = ClassCoverage(extractor.classifier.num_classes, self.confidence)

    def update(self, real: Tensor, fake: Tensor, labels: Tensor | None = None) -> None:
        if real.dim() != 4 or fake.shape[1:] != real.shape[1:]:
            raise ValueError(f"ImageQuality needs images (B, C, H, W) of one shape, got {real.shape} and {fake.shape}")
        if self.value_range is None:
            raise ValueError("ImageQuality needs the images' value_range: pass value_range=(low, high)")
        if self.extractor is None:
            self._build(tuple(real.shape[1:]))
        self.to(real.device)
        low, high = self.value_range
        # features in float32 even inside a 16-mixed / bf16-mixed test loop, so precision does not change the scores
        with torch.no_grad(), torch.autocast(real.device.type, enabled=False):
            real_f, fake_f = (self.extractor((x.float() - low) / (high - low)).float() for x in (real, fake))
        for features, is_real in ((real_f, True), (fake_f, False)):
            self.fid.update(features, real=is_real)
            self.kid.update(features, real=is_real)
        self.prdc.update(real_f, fake_f)
        if hasattr(self, "classes") and labels is not None:
            self.classes.update(self.extractor.logits(fake_f), labels)  # type: ignore[union-attr,operator]

    def compute(self) -> dict[str, Tensor]:
        if self.extractor is None:
            raise RuntimeError("ImageQuality.compute() before any update()")
        counts = torch.tensor([sum(map(len, self.kid.real_features)), sum(map(len, self.kid.fake_features))])
        if dist.is_available() and dist.is_initialized():  # compute() runs on every rank: a collective is safe
            counts = counts.to(self.kid.real_features[0].device)
            dist.all_reduce(counts)
        n = int(counts.min())
        if self.kid.subset_size > n:
            warnings.warn(
                f"KID: {n} samples, fewer than kid_subset_size={self.kid.subset_size}; using subsets of {n // 2}",
                stacklevel=2,
            )
            self.kid.subset_size = max(2, n // 2)
        kid_mean, kid_std = self.kid.compute()
        self.kid.subset_size = self.kid_subset_size
        out = {"fd": self.fid.compute(), "kid": kid_mean, "kid_std": kid_std, **self.prdc.compute()}
        if hasattr(self, "classes") and self.classes.update_called:
            out |= self.classes.compute()
        return {name: value.double() for name, value in out.items()}
