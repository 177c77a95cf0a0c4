"""LightningModules: training logic that combines nets and losses."""

from lit_gen.modules.gan import GANModule
from lit_gen.modules.vae import VAEModule, VAEOutput

__all__ = ["GANModule", "VAEModule", "VAEOutput"]
