"""DataModules for real data: embedded digits and MNIST, torchvision datasets, image folders; 2D mixtures."""

from lit_gen.data.base import ImageDataModule
from lit_gen.data.embedded import DigitsDataModule, MNISTSampleDataModule
from lit_gen.data.folder import ImageFolderDataModule
from lit_gen.data.mixtures import MixtureDataModule
from lit_gen.data.torchvision_sets import TorchvisionDataModule

__all__ = [
    "DigitsDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTSampleDataModule",
    "MixtureDataModule",
    "TorchvisionDataModule",
]
