"""Callbacks that observe training: image grids, prediction writers, a checkpoint on exceptions."""

from lit_gen.callbacks.checkpoint import AtomicCheckpointIO, SaveOnException
from lit_gen.callbacks.images import ImageWriter, SampleGrid

__all__ = ["AtomicCheckpointIO", "ImageWriter", "SampleGrid", "SaveOnException"]
