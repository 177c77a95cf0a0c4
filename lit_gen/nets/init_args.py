"""Nets that remember the arguments they were built with, so that a checkpoint of a model built in Python (or by
Hydra's ``instantiate``) can rebuild them: ``class_path`` + ``init_args``, as LightningCLI's config holds them."""

from __future__ import annotations

import inspect
from typing import Any

INIT_ARGS_ATTR = "_init_args"


class RecordsInitArgs:
    """Mixin (before ``nn.Module``) that keeps every constructor argument, defaults included, of the class actually
    built (subclasses too), readable with :func:`recorded_init_args`.

    It records in ``__new__``, which receives the same arguments as ``__init__``: no ``__init__`` is wrapped.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        net = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(net, *args, **kwargs)
        except TypeError:  # copy/pickle call __new__ without arguments; they restore the record with __dict__
            return net
        bound.apply_defaults()
        recorded: dict[str, Any] = {}
        for name, param in list(bound.signature.parameters.items())[1:]:
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                if bound.arguments.get(name):
                    return net  # positional extras have no names: nothing sound to record
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                recorded.update(bound.arguments.get(name, {}))
            else:
                recorded[name] = bound.arguments[name]
        net.__dict__[INIT_ARGS_ATTR] = recorded
        return net


def recorded_init_args(net: object) -> dict[str, Any] | None:
    """The constructor arguments a :class:`RecordsInitArgs` net was built with, None for other objects."""
    recorded = getattr(net, "__dict__", {}).get(INIT_ARGS_ATTR)
    return dict(recorded) if recorded is not None else None
