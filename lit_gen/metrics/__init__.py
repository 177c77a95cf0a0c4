"""Sample-quality and likelihood metrics on torchmetrics; see :mod:`lit_gen.metrics.evaluation` for how the modules
use them."""

from lit_gen.metrics.classes import ClassCoverage
from lit_gen.metrics.evaluation import MixtureQuality, SampleEvaluation
from lit_gen.metrics.features import ClassifierFeatures, InceptionFeatures, InceptionWeightsError, load_classifier
from lit_gen.metrics.image_quality import ImageQuality
from lit_gen.metrics.likelihood import LikelihoodMetrics
from lit_gen.metrics.mixtures import ModeCoverage, mixture_modes, sample_mixture
from lit_gen.metrics.prdc import PrecisionRecall, prdc

__all__ = [
    "ClassCoverage",
    "ClassifierFeatures",
    "ImageQuality",
    "InceptionFeatures",
    "InceptionWeightsError",
    "LikelihoodMetrics",
    "MixtureQuality",
    "ModeCoverage",
    "PrecisionRecall",
    "SampleEvaluation",
    "load_classifier",
    "mixture_modes",
    "prdc",
    "sample_mixture",
]
