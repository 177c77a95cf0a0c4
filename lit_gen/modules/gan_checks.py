"""Construction-time checks of a GANModule's options and networks, each error naming the fix."""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor, nn

from lit_gen.modules.common import shape_text
from lit_gen.nets.conditioning import packed_shape
from lit_gen.nets.dcgan import DCGANDiscriminator, DCGANGenerator


def check_options(**options: Any) -> None:
    """Range checks of the numeric options of :class:`~lit_gen.modules.gan.GANModule`."""
    for name in ("n_critic", "accumulate_grad_batches", "pack", "d_reg_interval"):
        if options[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {options[name]}")
    for name in ("gradient_penalty", "r1_gamma", "instance_noise", "instance_noise_steps", "ema_warmup"):
        if options[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {options[name]}")
    if options.get("max_generator_steps") is not None and options["max_generator_steps"] < 1:
        raise ValueError(f"max_generator_steps must be >= 1 or None, got {options['max_generator_steps']}")
    for name in ("weight_clip", "generator_clip_norm", "discriminator_clip_norm"):
        if options[name] is not None and options[name] <= 0:
            raise ValueError(f"{name} must be > 0 or None, got {options[name]}")
    if options["loss"] == "wasserstein" and not (options["weight_clip"] or options["gradient_penalty"]):
        warnings.warn(
            "loss='wasserstein' without weight_clip or gradient_penalty has no Lipschitz constraint and diverges; "
            "set gradient_penalty=10 (WGAN-GP) or weight_clip=0.01 (WGAN)",
            stacklevel=3,
        )
    check_penalty_norm(options["discriminator"], options["gradient_penalty"], options["r1_gamma"])
    if options["d_reg_interval"] > 1 and not (options["gradient_penalty"] or options["r1_gamma"]):
        warnings.warn("d_reg_interval has no effect without gradient_penalty or r1_gamma", stacklevel=3)


def check_penalty_norm(discriminator: nn.Module | None, gradient_penalty: float, r1_gamma: float) -> None:
    """Warn when a per-example gradient penalty meets a discriminator with batch norm (the default DCGAN one).

    Batch norm makes each example's logit depend on the whole batch, so the input gradient of one example is no
    longer its own: WGAN-GP (arXiv 1704.00028, section 4: "no critic batch normalization") and R1 assume it is.
    """
    weights = {"gradient_penalty": gradient_penalty, "r1_gamma": r1_gamma}
    penalties = [f"{name}={value:g}" for name, value in weights.items() if value]
    if not penalties:
        return
    if discriminator is None:
        where = "the default discriminator, DCGANDiscriminator(norm='batch'),"
    elif any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules()):
        where = f"the discriminator ({type(discriminator).__name__}) has batch norm and"
    else:
        return
    warnings.warn(
        f"{' and '.join(penalties)}: {where} normalizes over the batch, so the penalty's per-example input gradients "
        "mix the examples it treats as independent. Pass a discriminator without batch norm, e.g. "
        "GANModule(discriminator=DCGANDiscriminator(image_shape, norm='none', spectral_norm=...)) "
        "(in a config: discriminator: {class_path: lit_gen.nets.DCGANDiscriminator, init_args: {norm: none}}, "
        "as configs/gan/wgan_gp.yaml does)",
        stacklevel=3,
    )


def build_nets(
    generator: nn.Module | None, discriminator: nn.Module | None, latent_dim: int | None, pack: int
) -> tuple[nn.Module, nn.Module, int, int]:
    """The generator and discriminator (DCGAN defaults for missing ones), ``latent_dim`` and ``num_classes``."""
    generator = generator if generator is not None else DCGANGenerator(latent_dim=latent_dim or 64)
    g_latent = getattr(generator, "latent_dim", None)
    if latent_dim is not None and g_latent is not None and latent_dim != g_latent:
        raise ValueError(
            f"latent_dim={latent_dim} but the generator takes z of size {g_latent}; set them equal "
            f"(or leave latent_dim unset to use the generator's)"
        )
    if latent_dim is None and g_latent is None:
        raise ValueError("pass latent_dim: the generator has no `latent_dim` attribute to read it from")
    num_classes = int(getattr(generator, "num_classes", 0) or 0)
    data_shape = tuple(getattr(generator, "image_shape", (1, 28, 28)))
    d_shape = packed_shape(data_shape, pack)
    if discriminator is None:
        discriminator = DCGANDiscriminator(d_shape, num_classes=num_classes)
    d_classes = int(getattr(discriminator, "num_classes", 0) or 0)
    if d_classes != num_classes:
        raise ValueError(
            f"the generator has num_classes={num_classes} but the discriminator {d_classes}: a conditional GAN needs "
            "both nets built with the same num_classes (the discriminator projects the labels)"
        )
    if pack > 1 and num_classes:
        raise ValueError("pack > 1 (PacGAN) packs unlabelled samples; it cannot be combined with a conditional GAN")
    given = getattr(discriminator, "image_shape", None)
    if pack > 1 and given is not None and tuple(given) != d_shape:
        raise ValueError(
            f"pack={pack} stacks {pack} samples of {shape_text(data_shape)} along the channels, so the discriminator "
            f"sees {shape_text(d_shape)}, but it was built for {shape_text(given)}: build it with image_shape "
            f"{list(d_shape)}"
        )
    return generator, discriminator, int(latent_dim or g_latent), num_classes  # type: ignore[arg-type]


def check_fake(fake: Tensor, real: Tensor) -> None:
    """The generator's samples must have the data's shape."""
    if fake.shape[1:] != real.shape[1:]:
        raise ValueError(
            f"the generator makes {shape_text(fake.shape[1:])} images "
            f"but the data is {shape_text(real.shape[1:])}: "
            f"build the nets for the data (image_shape: {list(real.shape[1:])}) or resize the data with "
            "the DataModule's image_size (--data.image_size=SIZE)"
        )
