"""Tiny seeded nets and trainers for the tests."""

from __future__ import annotations

from typing import Any

import lightning as L

from lit_gen import DigitsDataModule, GANModule, VAEModule
from lit_gen.nets import MLPDecoder, MLPDiscriminator, MLPEncoder, MLPGenerator


def tiny_gan(**kwargs: Any) -> GANModule:
    L.seed_everything(0, verbose=False)
    return GANModule(
        generator=MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,)),
        discriminator=MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)),
        **kwargs,
    )


def tiny_vae(**kwargs: Any) -> VAEModule:
    L.seed_everything(0, verbose=False)
    return VAEModule(
        encoder=MLPEncoder((1, 8, 8), latent_dim=2, hidden=(16,)),
        decoder=MLPDecoder(latent_dim=2, image_shape=(1, 8, 8), hidden=(16,)),
        **kwargs,
    )


def digits(value_range: tuple[float, float] = (-1.0, 1.0), batch_size: int = 16) -> DigitsDataModule:
    return DigitsDataModule(batch_size=batch_size, value_range=value_range)


def trainer(tmp_path: Any, **kwargs: Any) -> L.Trainer:
    defaults: dict[str, Any] = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**(defaults | kwargs))
