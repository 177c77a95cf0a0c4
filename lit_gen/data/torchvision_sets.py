"""torchvision datasets by name (MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100, SVHN, ...), held in memory."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import PILToTensor

from lit_gen.data.base import ImageDataModule


class TorchvisionDataModule(ImageDataModule):
    """A dataset of ``torchvision.datasets`` by class name, decoded once into uint8 tensors.

    The official training split is divided into train/val; the official test split is the test set.

    Args:
        name: class name in ``torchvision.datasets``, e.g. ``"MNIST"``, ``"FashionMNIST"``, ``"CIFAR10"``.
        root: directory holding (or receiving) the files.
        download: let torchvision download the files into ``root`` (needs internet).
        **kwargs: the arguments of :class:`ImageDataModule`.
    """

    def __init__(self, name: str = "MNIST", root: str = "data", download: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.root = root
        self.download = download
        self._cls = getattr(torchvision.datasets, name, None)
        if not (inspect.isclass(self._cls) and issubclass(self._cls, Dataset)):
            known = ", ".join(n for n in ("MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100", "SVHN"))
            raise ValueError(f"unknown torchvision dataset {name!r}; use a class of torchvision.datasets, e.g. {known}")

    def prepare_data(self) -> None:
        if self.download:
            self._open(train=True)
            self._open(train=False)

    def load(self) -> tuple[Dataset, Dataset | None]:
        train = self._open(train=True)
        test = self._open(train=False)
        targets = _labels(train)
        self.num_classes = int(max(targets)) + 1 if len(targets) else None
        pool = self.tensor_dataset(_images(train), torch.as_tensor(targets))
        return pool, (None if test is None else self.tensor_dataset(_images(test), torch.as_tensor(_labels(test))))

    def _open(self, train: bool) -> Dataset | None:
        params = inspect.signature(self._cls).parameters
        kwargs: dict[str, Any] = {"root": self.root, "download": self.download}
        if "train" in params:
            kwargs["train"] = train
        elif "split" in params:
            kwargs["split"] = "train" if train else "test"
        elif not train:
            return None  # a dataset with a single split: test is carved out of it
        try:
            return self._cls(**kwargs)
        except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found"; urllib: no network
            where = Path(self.root).resolve()
            raise FileNotFoundError(
                f"{self.name} could not be loaded from {where} ({type(err).__name__}: {err}). Offline: copy the "
                f"{self.name} files into {where} in torchvision's layout (see torchvision.datasets.{self.name}), or "
                f"train on the embedded data (lit_gen.data.MNISTSampleDataModule, DigitsDataModule). Online: set "
                f"download=True on the DataModule (--data.download=true)."
            ) from err


def _images(ds: Any) -> Tensor:
    """uint8 ``(N, C, H, W)`` from a torchvision dataset: its ``data`` array when it has one, else decoded items."""
    data = getattr(ds, "data", None)
    if isinstance(data, Tensor) and data.dtype == torch.uint8 and data.dim() == 3:  # MNIST family (N, H, W)
        return data.unsqueeze(1)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 4:
        t = torch.from_numpy(data)
        return t if t.shape[1] in (1, 3) else t.permute(0, 3, 1, 2)  # SVHN is NCHW, CIFAR is NHWC
    to_tensor = PILToTensor()
    return torch.stack([to_tensor(ds[i][0]) for i in range(len(ds))])


def _labels(ds: Any) -> list[int]:
    for attr in ("targets", "labels"):
        value = getattr(ds, attr, None)
        if value is not None:
            return [int(v) for v in value]
    return [int(ds[i][1]) for i in range(len(ds))]
