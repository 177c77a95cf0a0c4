"""Checks of a VAEModule's options and networks, each error naming the fix."""

from __future__ import annotations

import lightning as L
from torch import Tensor, nn

from lit_gen.losses.vae import params_per_pixel
from lit_gen.modules.common import shape_text
from lit_gen.modules.evaluation import data_value_range


def check_objective(
    beta: float, schedule: str, free_bits: float, iwae_samples: int, capacity: float | None, importance: int
) -> None:
    """Range checks of the objective's options; the IWAE bound has no KL weight to schedule."""
    if importance < 0:
        raise ValueError(f"importance_samples must be >= 0, got {importance}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0 nats per dimension, got {free_bits}")
    if iwae_samples < 1:
        raise ValueError(f"iwae_samples must be >= 1 (1 = the ELBO), got {iwae_samples}")
    if iwae_samples > 1 and (beta != 1 or schedule != "constant" or free_bits or capacity is not None):
        raise ValueError(
            f"iwae_samples={iwae_samples} trains the IWAE bound, which has no KL weight: keep beta=1, "
            "beta_schedule='constant', free_bits=0 and capacity=None, or train the ELBO with iwae_samples=1"
        )


def net_sizes(encoder: nn.Module, decoder: nn.Module, latent_dim: int | None) -> tuple[int, int]:
    """The latent size and the class count that the nets and ``latent_dim`` agree on."""
    dims = {getattr(encoder, "latent_dim", None), getattr(decoder, "latent_dim", None), latent_dim}
    dims.discard(None)
    if len(dims) > 1:
        raise ValueError(f"latent sizes disagree: encoder, decoder and latent_dim give {sorted(dims)}")
    if not dims:
        raise ValueError("pass latent_dim: neither the encoder nor the decoder has a `latent_dim` attribute")
    classes = (getattr(encoder, "num_classes", 0), getattr(decoder, "num_classes", 0))
    if classes[0] != classes[1]:
        raise ValueError(
            f"a conditional VAE needs both nets conditional on the same classes: the encoder has num_classes="
            f"{classes[0]}, the decoder {classes[1]}; build both with the same num_classes"
        )
    return int(dims.pop()), int(classes[0])  # type: ignore[arg-type]


def check_decoder_output(likelihood: str, params: Tensor, x: Tensor) -> None:
    """The decoder's outputs ``(B, k·C, H, W)`` fit data ``x (B, C, H, W)`` under ``likelihood`` (k parameters per
    pixel), or an error that says which net to rebuild."""
    k = params_per_pixel(likelihood)
    if params.shape == (x.shape[0], k * x.shape[1], *x.shape[2:]):
        return
    if params.shape[2:] != x.shape[2:] or params.shape[1] % x.shape[1]:
        raise ValueError(
            f"the decoder makes {shape_text(params.shape[1:])} images but the data is {shape_text(x.shape[1:])}: "
            f"build the nets for the data (image_shape: {list(x.shape[1:])}) or resize the data with the "
            "DataModule's image_size (--data.image_size=SIZE)"
        )
    raise ValueError(
        f"the {likelihood} likelihood needs {k}×{x.shape[1]} decoder output channels but the decoder makes "
        f"{params.shape[1]}: build the decoder with out_channels: {k * x.shape[1]}"
    )


def check_unit_range(x: Tensor, alternative: str) -> None:
    """A Bernoulli likelihood needs pixels in [0, 1]: an error naming the fix for data outside it (one host sync; the
    modules call it on their first batch only). ``alternative`` names the likelihood to use instead."""
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"the Bernoulli likelihood needs pixels in [0, 1] but the data spans [{low:.2f}, {high:.2f}]; "
            f"set value_range=(0, 1) on the DataModule (--data.value_range=[0,1]) or use likelihood={alternative!r} on "
            "the module"
        )


def metric_value_range(module: L.LightningModule, likelihood: str) -> tuple[float, float]:
    """The pixel range the test metrics (MSE, PSNR) use: the DataModule's; [0, 1] for a Bernoulli likelihood without
    one; otherwise an error."""
    value_range = data_value_range(module)
    if value_range is None and likelihood != "bernoulli":
        raise ValueError("the test metrics need the data's pixel range: test with a DataModule that has value_range")
    return value_range or (0.0, 1.0)
