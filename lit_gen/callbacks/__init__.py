"""Callbacks that observe training: image grids and prediction writers."""

from lit_gen.callbacks.images import ImageWriter, SampleGrid

__all__ = ["ImageWriter", "SampleGrid"]
