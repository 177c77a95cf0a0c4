"""Checkpoint files checked before Lightning loads them: missing, truncated, or made by another module class."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch

CLASS_KEY = "lit_gen_class"


def check_checkpoint(path: Any, cls: type | None = None) -> None:
    """Raise a clear error unless ``path`` is a complete PyTorch checkpoint (of ``cls`` when it records its class).

    Reads the archive's table of contents and the class tag (memory-mapped, ``weights_only=True``); remote paths
    (``s3://``...) are left to Lightning.
    """
    if "://" in str(path):
        return
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file} does not exist; pass the path of a .ckpt file (or `last`)")
    if not zipfile.is_zipfile(file):
        raise ValueError(
            f"checkpoint {file} ({file.stat().st_size} bytes) is truncated or not a PyTorch checkpoint; it cannot be "
            "loaded. Use an earlier checkpoint of the run (last.ckpt, on_exception.ckpt or an epoch=... file)"
        )
    if cls is None:
        return
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True, mmap=True).get(CLASS_KEY)
    except Exception as err:
        raise ValueError(f"checkpoint {file} is damaged and cannot be read ({type(err).__name__}: {err})") from err
    if saved is not None and not any(f"{c.__module__}.{c.__qualname__}" == saved for c in cls.__mro__):
        short = saved.rsplit(".", 1)[-1]
        raise ValueError(
            f"checkpoint {file} holds a {saved}, not a {cls.__name__}: load it with {short}.load_from_checkpoint, "
            f"or with a config whose model is {short}"
        )


class CheckedLoading(L.LightningModule):
    """Records the module's class in its checkpoints and checks files before ``load_from_checkpoint``."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Lightning's ``load_from_checkpoint`` after :func:`check_checkpoint`."""
        check_checkpoint(checkpoint_path, cls)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
