"""Pieces the nets share for class conditioning, spectral normalization and PacGAN packing (no Lightning).

- Projection discriminator: Miyato & Koyama 2018 (arXiv 1802.05637), ``logit = ψ(φ(x)) + <embed(y), φ(x)>``.
- Spectral normalization: Miyato et al. 2018 (arXiv 1802.05957), torch's ``parametrizations.spectral_norm``.
- Packing: Lin et al. 2018, PacGAN (arXiv 1712.04086): D judges ``m`` samples at once, stacked along channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def check_labels(labels: Tensor | None, num_classes: int, batch: int, owner: str) -> Tensor | None:
    """Validate labels for a net with ``num_classes`` (0 = unconditional): int64, shape ``(B,)``, in ``[0, K)``.

    The range is checked for CPU tensors only (on an accelerator it would cost a device sync per call; GANModule
    checks the data's class count once per fit and ``sample``'s labels), and not while tracing or compiling.

    Raises:
        ValueError: labels missing for a conditional net, given to an unconditional one, or of the wrong
            dtype, shape or range.
    """
    if num_classes == 0:
        if labels is not None:
            raise ValueError(
                f"{owner} is unconditional (num_classes=0) but got labels; build it with num_classes=K for a "
                "class-conditional model, or do not pass labels"
            )
        return None
    if labels is None:
        raise ValueError(
            f"{owner} is class-conditional (num_classes={num_classes}) but got no labels; pass int64 labels of "
            "shape (B,), or build it with num_classes=0"
        )
    if labels.dtype != torch.int64 or labels.shape != (batch,):
        raise ValueError(
            f"{owner} needs int64 labels of shape ({batch},), got {labels.dtype} of shape {tuple(labels.shape)}; "
            "convert them with labels.long().reshape(-1)"
        )
    check_range = labels.device.type == "cpu" and not (torch.jit.is_tracing() or torch.compiler.is_compiling())
    if batch and check_range and bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(
            f"{owner} has num_classes={num_classes} but got labels in [{int(labels.min())}, {int(labels.max())}]; "
            f"labels must lie in [0, {num_classes}), or build the net with more classes"
        )
    return labels


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap every conv, linear and embedding weight of ``module`` in torch's spectral normalization (in place)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            spectral_norm(m)
    return module


class PicklableSpectralNorm(nn.Module):
    """Makes a net whose layers carry torch's spectral-norm parametrization picklable (``strategy="ddp_spawn"``,
    ``torch.multiprocessing``, ``pickle``).

    torch refuses to pickle parametrized modules ("only supported through state_dict()"). Pickled, the net holds
    plain copies of those layers (their raw weight as ``weight``) and its ``state_dict``; unpickled, spectral
    normalization is put back with the same settings and the state (raw weights, power-iteration vectors ``u``,
    ``v``) loaded, so the copy computes exactly what the original does. Put it first among the bases.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        normed = {name: m.parametrizations.weight[0] for name, m in self.named_modules()
                  if name and parametrize.is_parametrized(m, "weight") and len(m.parametrizations.weight) == 1
                  and hasattr(m.parametrizations.weight[0], "n_power_iterations")}  # fmt: skip
        if not normed:
            return state
        modules = {key: None if child is None else _plain_copy(child) for key, child in self._modules.items()}
        settings = {name: (sn.dim, sn.n_power_iterations, sn.eps) for name, sn in normed.items()}
        return state | {"_modules": modules, "_spectral_norm": (settings, self.state_dict())}

    def __setstate__(self, state: dict[str, Any]) -> None:
        settings, weights = state.pop("_spectral_norm", ({}, None))
        super().__setstate__(state)
        with torch.random.fork_rng(devices=[]):  # spectral_norm's initial power iterations draw random vectors
            for name, (dim, n_power_iterations, eps) in settings.items():
                spectral_norm(self.get_submodule(name), n_power_iterations=n_power_iterations, eps=eps, dim=dim)
        if weights is not None:
            self.load_state_dict(weights)


def _plain_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree (sharing its tensors) in which every spectral-norm layer is its plain class with
    the raw weight as ``weight``. ``parametrize.remove_parametrizations`` cannot be used on a copy: it edits the
    class the copy shares with the original."""
    parametrized = parametrize.is_parametrized(module, "weight")
    cls = type(module).__bases__[0] if parametrized else type(module)  # torch subclasses the layer's class
    twin = cls.__new__(cls)
    state = dict(module.__dict__)
    children = {k: v for k, v in module._modules.items() if not (parametrized and k == "parametrizations")}
    state["_modules"] = {k: None if v is None else _plain_copy(v) for k, v in children.items()}
    if parametrized:
        state["_parameters"] = {"weight": module.parametrizations.weight.original} | {
            k: v for k, v in module._parameters.items() if k != "weight"
        }
    object.__setattr__(twin, "__dict__", state)
    return twin


class Projection(nn.Module):
    """The class term of a projection discriminator: ``<embed(y), φ(x)>``, shape ``(B,)``.

    Args:
        num_classes: number of classes.
        features: size of ``φ(x)``.
    """

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, phi: Tensor, labels: Tensor) -> Tensor:
        """``φ(x)`` ``(B, F)`` and labels ``(B,)`` -> ``(B,)``."""
        return (self.embed(labels) * phi).sum(1)


def pack(x: Tensor, m: int) -> Tensor:
    """Stack groups of ``m`` consecutive samples along the channel axis: ``(B, C, ...) -> (B // m, m·C, ...)``.

    A batch that ``m`` does not divide loses its last ``B mod m`` samples.
    """
    if m == 1:
        return x
    n = x.shape[0] - x.shape[0] % m
    if n == 0:
        raise ValueError(f"pack={m} needs batches of at least {m} samples, got {x.shape[0]}: raise the batch size")
    return x[:n].reshape(n // m, m * x.shape[1], *x.shape[2:])


def packed_shape(shape: Sequence[int], m: int) -> tuple[int, ...]:
    """The shape of one discriminator input for data of ``shape`` packed ``m`` at a time: ``(m·C, ...)``."""
    return (m * int(shape[0]), *(int(s) for s in shape[1:]))
