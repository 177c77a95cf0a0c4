"""GAN objectives as pure functions of discriminator logits (never probabilities: logits stay exact under autocast).

Each loss is a pair ``(discriminator_loss(real, fake), generator_loss(fake))`` of functions that take the
discriminator's raw outputs, any shape ``(B, ...)``, and return a scalar to *minimise*.

- ``minimax``: Goodfellow et al. 2014 (arXiv 1406.2661). D maximises ``E[log D(x)] + E[log(1 - D(G(z)))]``
  with ``D = sigmoid(logit)``; G minimises ``E[log(1 - D(G(z)))]`` (the saturating game exactly as written).
- ``non_saturating``: same D; G maximises ``E[log D(G(z))]`` (the paper's practical variant).
- ``wasserstein``: Arjovsky et al. 2017 (arXiv 1701.07875); needs a Lipschitz critic (weight clipping or the
  gradient penalty of Gulrajani et al. 2017, arXiv 1704.00028).
- ``hinge``: Lim & Ye 2017 (arXiv 1705.02894), as used by SNGAN (arXiv 1802.05957).
- ``least_squares``: Mao et al. 2017 (arXiv 1611.04076), targets a=0 (fake), b=1 (real), c=1.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal, NamedTuple

import torch.nn.functional as F
from torch import Tensor

GANLossName = Literal["minimax", "non_saturating", "wasserstein", "hinge", "least_squares"]


def minimax_discriminator_loss(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """``-(E[log sigmoid(real)] + E[log(1 - sigmoid(fake))])`` = ``E[softplus(-real)] + E[softplus(fake)]``.

    ``real_target < 1`` is one-sided label smoothing (Salimans et al. 2016, arXiv 1606.03498): the binary
    cross-entropy of the real logits against the target ``t``, ``t·softplus(-real) + (1 - t)·softplus(real)``.
    """
    if real_target == 1.0:
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    real_term = real_target * F.softplus(-real) + (1.0 - real_target) * F.softplus(real)
    return real_term.mean() + F.softplus(fake).mean()


def minimax_generator_loss(fake: Tensor) -> Tensor:
    """``E[log(1 - sigmoid(fake))]`` = ``-E[softplus(fake)]``: saturates when D rejects the fakes confidently."""
    return -F.softplus(fake).mean()


def non_saturating_generator_loss(fake: Tensor) -> Tensor:
    """``-E[log sigmoid(fake)]`` = ``E[softplus(-fake)]``."""
    return F.softplus(-fake).mean()


def wasserstein_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    """``E[critic(fake)] - E[critic(real)]``: minus the critic's Wasserstein-1 estimate."""
    return fake.mean() - real.mean()


def wasserstein_generator_loss(fake: Tensor) -> Tensor:
    """``-E[critic(fake)]`` (also the hinge generator loss)."""
    return -fake.mean()


def hinge_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    """``E[relu(1 - real)] + E[relu(1 + fake)]``."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def least_squares_discriminator_loss(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """``0.5 E[(real - b)^2] + 0.5 E[fake^2]`` with ``b = real_target`` (1; below 1 smooths the real labels)."""
    return 0.5 * (real - real_target).square().mean() + 0.5 * fake.square().mean()


def least_squares_generator_loss(fake: Tensor) -> Tensor:
    """``0.5 E[(fake - 1)^2]``."""
    return 0.5 * (fake - 1.0).square().mean()


class GANLoss(NamedTuple):
    """The two halves of a GAN objective."""

    discriminator: Callable[[Tensor, Tensor], Tensor]
    generator: Callable[[Tensor], Tensor]


GAN_LOSSES: dict[str, GANLoss] = {
    "minimax": GANLoss(minimax_discriminator_loss, minimax_generator_loss),
    "non_saturating": GANLoss(minimax_discriminator_loss, non_saturating_generator_loss),
    "wasserstein": GANLoss(wasserstein_discriminator_loss, wasserstein_generator_loss),
    "hinge": GANLoss(hinge_discriminator_loss, wasserstein_generator_loss),
    "least_squares": GANLoss(least_squares_discriminator_loss, least_squares_generator_loss),
}


SMOOTHABLE = ("minimax", "non_saturating", "least_squares")


def get_gan_loss(name: str, label_smoothing: float = 0.0) -> GANLoss:
    """Look a GAN objective up by name, with an error that lists the known names.

    Args:
        name: one of :data:`GAN_LOSSES`.
        label_smoothing: ``ε`` of one-sided label smoothing: real targets ``1 - ε`` (losses with labels only).
    """
    try:
        loss = GAN_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {sorted(GAN_LOSSES)}") from None
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if label_smoothing:
        if name not in SMOOTHABLE:
            raise ValueError(
                f"label_smoothing applies to losses with real/fake labels {SMOOTHABLE}, not {name!r}; set it to 0"
            )
        return loss._replace(discriminator=partial(loss.discriminator, real_target=1.0 - label_smoothing))
    return loss
