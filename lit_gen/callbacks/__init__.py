"""Callbacks that observe training: image grids, reconstructions and interpolations (to wandb, TensorBoard or PNG
files), prediction writers, a checkpoint on exceptions."""

from lit_gen.callbacks.checkpoint import AtomicCheckpointIO, SaveOnException
from lit_gen.callbacks.image_log import ImageLogCallback, run_dir
from lit_gen.callbacks.images import ImageWriter, SampleGrid
from lit_gen.callbacks.interpolations import Interpolations
from lit_gen.callbacks.reconstructions import Reconstructions

__all__ = [
    "AtomicCheckpointIO",
    "ImageLogCallback",
    "ImageWriter",
    "Interpolations",
    "Reconstructions",
    "SampleGrid",
    "SaveOnException",
    "run_dir",
]
