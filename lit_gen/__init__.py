"""lit_gen: PyTorch Lightning modules for GANs and VAEs.

The public names are loaded lazily, so that ``import lit_gen.nets`` stays free of Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GANModule": "lit_gen.modules",
    "VAEModule": "lit_gen.modules",
    "VAEOutput": "lit_gen.modules",
    "VQVAEModule": "lit_gen.modules.vqvae",
    "ImageDataModule": "lit_gen.data",
    "DigitsDataModule": "lit_gen.data",
    "MNISTSampleDataModule": "lit_gen.data",
    "TorchvisionDataModule": "lit_gen.data",
    "ImageFolderDataModule": "lit_gen.data",
    "MixtureDataModule": "lit_gen.data",
    "ImageQuality": "lit_gen.metrics",
    "MixtureQuality": "lit_gen.metrics",
    "SampleGrid": "lit_gen.callbacks",
    "ImageWriter": "lit_gen.callbacks",
    "Reconstructions": "lit_gen.callbacks",
    "Interpolations": "lit_gen.callbacks",
    "LitGenCLI": "lit_gen.cli",
    "auto_precision": "lit_gen.speed_choice",
    "DCGANGenerator": "lit_gen.nets",
    "DCGANDiscriminator": "lit_gen.nets",
    "MLPGenerator": "lit_gen.nets",
    "MLPDiscriminator": "lit_gen.nets",
    "MLPEncoder": "lit_gen.nets",
    "MLPDecoder": "lit_gen.nets",
    "ConvEncoder": "lit_gen.nets",
    "ConvDecoder": "lit_gen.nets",
    "VectorQuantizer": "lit_gen.nets",
    "VQEncoder": "lit_gen.nets",
    "VQDecoder": "lit_gen.nets",
    "DigitClassifier": "lit_gen.nets",
    "ResNetGenerator": "lit_gen.nets",
    "ResNetDiscriminator": "lit_gen.nets",
    "ResNetEncoder": "lit_gen.nets",
    "ResNetDecoder": "lit_gen.nets",
    "DiffAugment": "lit_gen.nets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lit_gen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
