"""Checkpoint files checked before Lightning loads them: missing, truncated, or made by another module class."""

from __future__ import annotations

import inspect
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lit_gen.modules.recorded_objects import UNRECORDED_KEY, class_paths, importable, is_unrecorded

CLASS_KEY = "lit_gen_class"
_MISSING = object()


def check_checkpoint(path: Any, cls: type | None = None, rebuilt_from_it: bool = True) -> dict[str, Any] | None:
    """Raise a clear error unless ``path`` is a complete PyTorch checkpoint (of ``cls`` when it records its class)
    whose model can be rebuilt from its hyperparameters alone when ``rebuilt_from_it`` (``lit-gen ... --ckpt_path``).

    Reads the archive's table of contents, the class tag and the hyperparameters (memory-mapped,
    ``weights_only=True``); remote paths (``s3://``...) are left to Lightning. Returns the memory-mapped checkpoint,
    None for a remote path.
    """
    if "://" in str(path):
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file} does not exist; pass the path of a .ckpt file (or `last`)")
    if not zipfile.is_zipfile(file):
        raise ValueError(
            f"checkpoint {file} ({file.stat().st_size} bytes) is truncated or not a PyTorch checkpoint; it cannot be "
            "loaded. Use an earlier checkpoint of the run (last.ckpt, on_exception.ckpt or an epoch=... file)"
        )
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        saved = checkpoint.get(CLASS_KEY)
    except Exception as err:
        raise ValueError(f"checkpoint {file} is damaged and cannot be read ({type(err).__name__}: {err})") from err
    classes = [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__] if cls is not None else []
    if cls is not None and saved is not None and saved not in classes:
        short = saved.rsplit(".", 1)[-1]
        raise ValueError(
            f"checkpoint {file} holds a {saved}, not a {cls.__name__}: load it with {short}.load_from_checkpoint, "
            f"or with a config whose model is {short}"
        )
    if rebuilt_from_it:
        refuse_unrecorded_nets(checkpoint, file)
    return checkpoint


def refuse_unrecorded_nets(checkpoint: dict[str, Any], file: Path) -> None:
    """Raise for a net that the checkpoint records only as its class (a model built in Python with a net whose init
    arguments could not be recorded): a config cannot rebuild it, only ``load_from_checkpoint`` with the net."""
    hparams = checkpoint.get("hyper_parameters") or {}
    weights = {key.split(".", 1)[0] for key in checkpoint.get("state_dict", {})}
    for name, value in hparams.items():
        if name in weights and is_unrecorded(value):
            model = str(checkpoint.get(CLASS_KEY, "the model's class")).rsplit(".", 1)[-1]
            raise ValueError(
                f"checkpoint {file}: its {name} is a {value['class_path']} whose init arguments could not be recorded "
                f"({value[UNRECORDED_KEY]}), so it cannot be rebuilt from the checkpoint: load it in Python with "
                f"{model}.load_from_checkpoint(path, {name}=...), passing the net built as for training"
            )


def objects_to_rebuild(cls: type, checkpoint: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Check that every argument of ``cls`` passed as an object when the checkpoint's model was built can be rebuilt
    from the checkpoint (or is in ``given``); raise an error naming the argument to pass again for a net that cannot.

    A net (an argument with weights in the state dict) that the checkpoint does not record, or records only as its
    class, raises a ``ValueError`` that says to pass it again; an optimizer, scheduler or evaluation is replaced by
    the default, with a warning. Returns the arguments to pass to Lightning's ``load_from_checkpoint`` for those.
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    if not hparams:
        return {}
    weights = {key.split(".", 1)[0] for key in checkpoint.get("state_dict", {})}
    replaced: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in given or param.kind is not inspect.Parameter.KEYWORD_ONLY or param.default is not None:
            continue
        value = hparams.get(name, _MISSING)
        if value is _MISSING:
            why = "was passed as an object and the checkpoint was saved before lit_gen recorded objects"
        elif is_unrecorded(value):
            why = f"is a {value['class_path']} whose init arguments could not be recorded: {value[UNRECORDED_KEY]}"
        else:
            absent = [p for p in class_paths(value) if not importable(p)]
            if not absent:
                continue
            why = f"is a {absent[0]}, which cannot be imported here"
        if name in weights:
            raise ValueError(
                f"the checkpoint's {name} {why}, so it cannot be rebuilt from the checkpoint alone: pass it again, "
                f"built as for training, e.g. {cls.__name__}.load_from_checkpoint(path, {name}=...); its weights "
                "are then loaded from the checkpoint"
            )
        rank_zero_warn(
            f"the checkpoint's {name} {why}: {cls.__name__} uses its default {name}. Pass "
            f"{cls.__name__}.load_from_checkpoint(path, {name}=...) to use the one of training"
        )
        replaced[name] = None
    return replaced


class CheckedLoading(L.LightningModule):
    """Records the module's class in its checkpoints and checks files before ``load_from_checkpoint``."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Lightning's ``load_from_checkpoint`` after :func:`check_checkpoint` and :func:`objects_to_rebuild`: nets
        and optimizers recorded in the hyperparameters are rebuilt from them; ``kwargs`` replace them."""
        checkpoint = check_checkpoint(checkpoint_path, cls, rebuilt_from_it=False)
        if checkpoint is not None and kwargs.get("hparams_file") is None:
            kwargs |= objects_to_rebuild(cls, checkpoint, kwargs)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
