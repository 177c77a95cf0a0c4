"""Feature networks for the sample metrics: lit_gen's shipped digit classifiers, Inception v3, or any module.

Every extractor here takes images with pixels in [0, 1], shape ``(B, C, H, W)``, and returns ``(B, num_features)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lit_gen.nets.classifier import DigitClassifier

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: The classifiers that ship inside the package, by name, with the image shape each was trained on.
SHIPPED_CLASSIFIERS = {"digits": (1, 8, 8), "mnist_sample": (1, 28, 28)}

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
INCEPTION_ENV = "LIT_GEN_INCEPTION_WEIGHTS"


class InceptionWeightsError(RuntimeError):
    """Inception v3 weights are neither on disk nor downloadable."""


def classifier_paths(name: str) -> tuple[Path, Path]:
    """``(weights .pt, metadata .json)`` of a shipped classifier, or of a path given without its suffix."""
    base = WEIGHTS_DIR / name if name in SHIPPED_CLASSIFIERS else Path(name).with_suffix("")
    return base.with_suffix(".pt"), base.with_suffix(".json")


def load_classifier(name: str) -> tuple[DigitClassifier, dict[str, Any]]:
    """A :class:`DigitClassifier` in eval mode and its metadata (architecture, data split, test accuracy).

    Args:
        name: ``"digits"`` or ``"mnist_sample"`` (shipped), or the path of a ``.pt`` file written by
            ``scripts/train_classifier.py`` (its ``.json`` beside it).
    """
    weights, meta_path = classifier_paths(name)
    if not weights.is_file() or not meta_path.is_file():
        raise FileNotFoundError(
            f"classifier {name!r}: {weights} or {meta_path} is missing; use one of {sorted(SHIPPED_CLASSIFIERS)} or "
            "train one with `python scripts/train_classifier.py --dataset ... --out PATH`"
        )
    meta = json.loads(meta_path.read_text())
    net = DigitClassifier(**meta["architecture"])
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as err:  # a truncated or foreign file
        raise RuntimeError(f"could not load classifier weights {weights}: {err}") from err
    return net.eval().requires_grad_(False), meta


def classifier_for_shape(image_shape: tuple[int, ...]) -> str:
    """The shipped classifier for images of this shape; an error naming the options otherwise."""
    for name, shape in SHIPPED_CLASSIFIERS.items():
        if tuple(image_shape) == shape:
            return name
    raise ValueError(
        f"no shipped classifier for images of shape {tuple(image_shape)} (there are {SHIPPED_CLASSIFIERS}); "
        "train one with `python scripts/train_classifier.py` and pass its path as `classifier`, "
        "or use feature='inception' or your own feature module"
    )


def check_inception_weights(weights: str | None) -> None:
    """Fail early, with the fix, when torch-fidelity is missing or a given weights path does not exist."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError(
            "feature='inception' needs torch-fidelity: `pip install 'lit-gen[inception]'` (or torch-fidelity)"
        ) from err
    path = weights or os.environ.get(INCEPTION_ENV) or None
    if path is not None and not Path(path).is_file():
        raise InceptionWeightsError(
            f"Inception weights not found at {path} (from {'inception_weights' if weights else INCEPTION_ENV}); "
            f"download {INCEPTION_FILE} from {INCEPTION_URL} and point `inception_weights` or {INCEPTION_ENV} at it"
        )


class ClassifierFeatures(nn.Module):
    """The penultimate activations of a :class:`DigitClassifier`; :meth:`logits` gives its class scores."""

    def __init__(self, classifier: DigitClassifier) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = classifier.num_features

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)  # never leaves eval mode (no dropout in the features)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x)

    def logits(self, features: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` from the features :meth:`forward` returned."""
        return self.classifier.head(features)


class InceptionFeatures(nn.Module):
    """The 2048-d pool features of the FID Inception v3 (torchmetrics' copy; its weights come from torch-fidelity).

    Grey images are repeated to 3 channels; images are resized to 299×299 inside the network.

    Args:
        weights: path of ``weights-inception-2015-12-05-6726825d.pth``; default ``$LIT_GEN_INCEPTION_WEIGHTS``, then
            torch hub's cache (downloaded there on first use where the machine has internet).
    """

    num_features = 2048

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as err:  # pragma: no cover - torchmetrics is a dependency
            raise ImportError(f"feature='inception' needs torchmetrics' image extras: {err}") from err
        check_inception_weights(weights)
        path = weights or os.environ.get(INCEPTION_ENV) or None
        try:
            self.inception = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=[str(self.num_features)], feature_extractor_weights_path=path
            )
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(
                "feature='inception' needs torch-fidelity: `pip install 'lit-gen[inception]'` (or torch-fidelity)"
            ) from err
        except OSError as err:  # URLError is an OSError: no internet, and no weights in torch hub's cache
            hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
            raise InceptionWeightsError(
                f"Inception v3 weights could not be downloaded ({err}). On a machine with internet, download "
                f"{INCEPTION_URL}, copy {INCEPTION_FILE} here and pass its path as `inception_weights` "
                f"(--model.evaluation.init_args.inception_weights=PATH) or set {INCEPTION_ENV}=PATH, "
                f"or place it at {hub}. Offline, feature='classifier' works for digits."
            ) from err

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ValueError(f"Inception features need 1- or 3-channel images, got {x.shape[1]} channels")
        return self.inception((x * 255).round().clamp(0, 255).to(torch.uint8)).reshape(x.shape[0], -1)
