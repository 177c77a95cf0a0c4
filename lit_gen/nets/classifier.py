"""A LeNet-sized digit classifier whose penultimate activations are the features of lit_gen's sample metrics.

LeCun et al. 1998 (LeNet-5) for the layout; TF-GAN's MNIST evaluation ("Fréchet classifier distance", Salimans et al.
2016, arXiv 1606.03498) for using a small dataset-specific classifier in place of Inception on digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lit_gen.nets.init_args import RecordsInitArgs
from lit_gen.nets.shapes import check_image_shape


class DigitClassifier(RecordsInitArgs, nn.Module):
    """Two conv blocks (conv, ReLU, 2×2 max-pool), a hidden layer of ``feature_dim`` units, a linear classifier.

    Kernels are 5×5 for sides of 16 px and above, 3×3 below (8×8 digits). Inputs are pixels in [0, 1].

    Args:
        image_shape: ``(channels, height, width)``, both sides divisible by 4.
        num_classes: number of labels.
        channels: output channels of the two conv blocks.
        feature_dim: size of the penultimate layer, the feature vector of :meth:`features`.
        dropout: dropout before the last layer, during training only.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        feature_dim: int = 128,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        c, h, w = self.image_shape
        if h % 4 or w % 4:
            raise ValueError(f"DigitClassifier needs sides divisible by 4, got image_shape {self.image_shape}")
        kernel = 5 if min(h, w) >= 16 else 3
        c1, c2 = channels
        self.convs = nn.Sequential(
            nn.Conv2d(c, c1, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
        self.num_classes = num_classes
        self.num_features = feature_dim

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations: ``(B, C, H, W)`` in [0, 1] -> ``(B, feature_dim)``."""
        return self.convs(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits: ``(B, C, H, W)`` in [0, 1] -> ``(B, num_classes)``."""
        return self.head(self.features(x))

    @torch.no_grad()
    def accuracy(self, x: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
        """Share of ``x`` classified as ``labels``, in eval mode."""
        was_training = self.training
        self.eval()
        correct = sum(
            int((self(x[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
            for i in range(0, len(x), batch_size)
        )
        self.train(was_training)
        return correct / len(x)
