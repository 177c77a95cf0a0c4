"""Pure loss functions on tensors."""

from lit_gen.losses.gan import GAN_LOSSES, GANLoss, get_gan_loss
from lit_gen.losses.penalties import gradient_penalty, r1_penalty
from lit_gen.losses.vae import gaussian_kl, reconstruction_nll, reparameterize

__all__ = [
    "GAN_LOSSES",
    "GANLoss",
    "gaussian_kl",
    "get_gan_loss",
    "gradient_penalty",
    "r1_penalty",
    "reconstruction_nll",
    "reparameterize",
]
