"""Nets, optimizers and schedulers passed as Python objects, recorded in the hyperparameters as LightningCLI records
them (``class_path`` + ``init_args``), so that ``load_from_checkpoint(path)`` rebuilds them through Lightning's own
``lightning.pytorch.cli.instantiate_module`` (jsonargparse), as it does for ``lit-gen`` checkpoints.

What can be recorded soundly:

* lit_gen's nets (:class:`~lit_gen.nets.init_args.RecordsInitArgs`) and other nets built from them;
* other ``nn.Module`` s whose every constructor argument is a plain value (numbers, strings, lists of them) kept as an
  attribute of the same name, checked by rebuilding the net on the ``meta`` device from those values and comparing
  its structure (``repr``, parameter and buffer shapes, plain attributes of every submodule);
* optimizer and scheduler classes, ``functools.partial(cls, **kwargs)`` (Hydra's ``_partial_: true``) and the
  callables jsonargparse builds from ``class_path`` configs; importable functions by their import path.

Anything else is recorded as its class and a note; loading then asks for the object again by its argument's name.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lit_gen.nets.init_args import recorded_init_args

INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"
UNRECORDED_KEY = "lit_gen_unrecorded"  # beside class_path: why the init arguments could not be recorded
_PLAIN = (bool, int, float, str, type(None))


class Unrecordable(ValueError):
    """An object that cannot be written down as ``class_path`` + ``init_args``; the message says why."""


def record_argument(value: Any) -> Any:
    """The config form of an argument passed as an object: ``{"class_path": ..., "init_args": {...}}`` (nets,
    optimizer and scheduler callables) or an import path (functions); ``{"class_path": ...,
    "lit_gen_unrecorded": why}`` when its arguments cannot be known."""
    try:
        if isinstance(value, nn.Module):
            return _record_net(value)
        return _record_callable(value)
    except Unrecordable as why:
        cls = value if isinstance(value, type) else type(value)
        return {"class_path": _path(cls), UNRECORDED_KEY: str(why)}


def is_unrecorded(value: Any) -> bool:
    """Whether a saved hyperparameter is the note :func:`record_argument` leaves for an object it could not record."""
    return isinstance(value, dict) and UNRECORDED_KEY in value


def class_paths(value: Any) -> list[str]:
    """Every ``class_path`` in a recorded argument, nested ones included."""
    if isinstance(value, dict):
        found = [value["class_path"]] if isinstance(value.get("class_path"), str) else []
        return found + [p for v in value.values() for p in class_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in class_paths(v)]
    return []


def importable(path: str) -> bool:
    """Whether the object named ``module.Qualified.name`` imports here."""
    try:
        _resolve(path)
    except (ImportError, AttributeError):
        return False
    return True


def _resolve(path: str) -> Any:
    """The object named ``module.Qualified.name``: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(f"no module of {path} imports")


def _path(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _check_importable(obj: Any) -> str:
    path = _path(obj)
    if "<locals>" in obj.__qualname__ or not importable(path) or _resolve(path) is not obj:
        raise Unrecordable(f"{obj.__qualname__} is not importable by the name {path} (define it at module level)")
    return path


def _record_value(value: Any) -> Any:
    """A plain value as YAML would hold it: sequences (tuples, Hydra's ``ListConfig``) become lists, mappings
    (``DictConfig``) dicts, paths strings; nets inside lit_gen nets' arguments are recorded recursively."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, nn.Module):
        return _record_net(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _record_value(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return [_record_value(v) for v in value]
    raise Unrecordable(f"an argument is a {type(value).__name__}, which has no plain config form")


def _record_net(net: nn.Module) -> dict[str, Any]:
    cls = type(net)
    path = _check_importable(cls)
    args = recorded_init_args(net)
    if args is not None:
        return {"class_path": path, "init_args": {k: _record_value(v) for k, v in args.items()}}
    return {"class_path": path, "init_args": _recovered_init_args(net)}


def _recovered_init_args(net: nn.Module) -> dict[str, Any]:
    """The constructor arguments of a net that keeps each one as an attribute of the same name, verified by
    rebuilding it on the ``meta`` device (no memory, no initialization cost) and comparing the two."""
    cls = type(net)
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError) as err:
        raise Unrecordable(f"its constructor's signature cannot be read ({err})") from err
    args: dict[str, Any] = {}
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise Unrecordable(f"its constructor takes {'*' if p.kind == p.VAR_POSITIONAL else '**'}{p.name}")
        value = net.__dict__.get(p.name, inspect.Parameter.empty)
        if value is inspect.Parameter.empty or not _is_plain(value):
            raise Unrecordable(f"its argument {p.name!r} is not kept as a plain attribute of the same name")
        args[p.name] = _record_value(value)
    try:
        with torch.device("meta"):
            rebuilt = cls(**args)
    except Exception as err:  # any failure means the arguments were not recovered
        raise Unrecordable(f"rebuilding it from its attributes {args} failed ({type(err).__name__}: {err})") from err
    if _structure(rebuilt) != _structure(net):
        raise Unrecordable(f"the net rebuilt from its attributes {args} differs from it")
    return args


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, Sequence) and not isinstance(value, bytes) and all(_is_plain(v) for v in value)


def _structure(net: nn.Module) -> tuple[Any, ...]:
    shapes = [(k, tuple(v.shape)) for k, v in net.state_dict(keep_vars=True).items()]
    plain = [
        (name, k, _record_value(v))
        for name, m in net.named_modules()
        for k, v in vars(m).items()
        if not k.startswith("_") and k != "training" and _is_plain(v)
    ]
    return repr(net), shapes, plain


def _record_callable(value: Any) -> Any:
    if isinstance(value, functools.partial):
        func, args, kwargs = value.func, value.args, dict(value.keywords)
        # jsonargparse builds a class_path config's callable as partial(call_without_instantiate_context,
        # instantiator, cls, **init_args)
        if getattr(func, "__module__", "").startswith("jsonargparse") and args and isinstance(args[-1], type):
            func, args = args[-1], ()
        if args:
            raise Unrecordable(f"the partial of {getattr(func, '__qualname__', func)} binds positional arguments")
        if isinstance(func, type):
            init_args = {k: _record_value(v) for k, v in kwargs.items()}
            return {"class_path": _check_importable(func), "init_args": init_args}
        if kwargs:
            raise Unrecordable(f"a partial of the function {getattr(func, '__qualname__', func)} has no config form")
        return _record_callable(func)
    if isinstance(value, type):
        return {"class_path": _check_importable(value), "init_args": {}}
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        if value.__name__ == "<lambda>":
            raise Unrecordable("a lambda has no import path")
        return _check_importable(value)
    raise Unrecordable(f"a {type(value).__name__} object has no config form")


def instantiator_keys(cls: type) -> dict[str, str]:
    """The keys with which LightningCLI marks hyperparameters that its ``instantiate_module`` must build:
    ``_instantiator``, and ``_class_path`` (the module's class, which ``lit-gen ... --ckpt_path`` reads) when the
    class imports by its name."""
    keys = {"_instantiator": INSTANTIATOR}
    with contextlib.suppress(Unrecordable):
        keys["_class_path"] = _check_importable(cls)
    return keys


def record_objects(objects: dict[str, Any]) -> dict[str, Any]:
    """:func:`record_argument` of every object that is not None."""
    return {name: record_argument(value) for name, value in objects.items() if value is not None}
