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
from typing import Literal, NamedTuple

import torch.nn.functional as F
from torch import Tensor

GANLossName = Literal["minimax", "non_saturating", "wasserstein", "hinge", "least_squares"]


def minimax_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    """``-(E[log sigmoid(real)] + E[log(1 - sigmoid(fake))])`` = ``E[softplus(-real)] + E[softplus(fake)]``."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


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


def least_squares_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    """``0.5 E[(real - 1)^2] + 0.5 E[fake^2]``."""
    return 0.5 * (real - 1.0).square().mean() + 0.5 * fake.square().mean()


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


def get_gan_loss(name: str) -> GANLoss:
    """Look a GAN objective up by name, with an error that lists the known names."""
    try:
        return GAN_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {sorted(GAN_LOSSES)}") from None
