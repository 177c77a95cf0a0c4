"""Gradient penalties on the discriminator: WGAN-GP and R1.

- Gradient penalty: Gulrajani et al. 2017 (arXiv 1704.00028), ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random
  interpolates ``x_hat`` between real and fake images.
- R1: Mescheder et al. 2018 (arXiv 1801.04406), ``E[||grad_x D(x)||_2^2]`` on real images; multiply by gamma/2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

FP16_GRAD_SCALE = 256.0
"""Scale of the penalties' inner gradient under fp16 precision (``precision="16-mixed"``).

The gradient is taken of ``FP16_GRAD_SCALE * sum(outputs)`` and divided by it again, so that small input gradients
do not underflow in fp16 (smallest normal 6.1e-5). It is deliberately not the GradScaler's scale: that starts at
2^16, and every logit's gradient would then be 65536, which is ``inf`` in fp16 (largest finite 65504). 2^8 leaves a
factor 256 of headroom for the gradients inside the discriminator.
"""


def input_gradient_sq_norm(outputs: Tensor, inputs: Tensor, scale: float = 1.0) -> Tensor:
    """Per-example ``||d sum(outputs) / d inputs||_2^2``, shape ``(B,)`` in float32, with a graph for the backward.

    Args:
        outputs: discriminator outputs ``(B,)`` computed from ``inputs``.
        inputs: ``(B, ...)`` tensor with ``requires_grad=True``.
        scale: under fp16 precision, :data:`FP16_GRAD_SCALE`: the gradient is taken of ``scale * sum(outputs)``, so
            that fp16 intermediate gradients do not underflow, and divided by ``scale`` again (PyTorch AMP recipe
            "gradient penalty"). It must not be so large that ``scale`` itself overflows fp16. 1 otherwise.
    """
    (grad,) = torch.autograd.grad(outputs.float().sum() * scale, inputs, create_graph=True)
    return (grad.float() / scale).flatten(1).square().sum(1)


def r1_penalty(real_logits: Tensor, real: Tensor, scale: float = 1.0) -> Tensor:
    """``E[||grad_x D(x)||^2]`` over real images ``x`` (``real.requires_grad`` must be set before ``D(real)``)."""
    return input_gradient_sq_norm(real_logits, real, scale).mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    rng: torch.Generator | None = None,
    scale: float = 1.0,
) -> Tensor:
    """WGAN-GP: ``E[(||grad D(x_hat)||_2 - 1)^2]`` with ``x_hat = a·real + (1 - a)·fake``, ``a ~ U[0, 1]`` per example.

    Args:
        critic: the discriminator, ``(B, C, H, W) -> (B,)``.
        real: real images ``(B, C, H, W)``.
        fake: generated images of the same shape (detached or not: only ``x_hat`` is differentiated).
        rng: optional generator for ``a``.
        scale: :data:`FP16_GRAD_SCALE` under fp16 precision (see :func:`input_gradient_sq_norm`), else 1.
    """
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, generator=rng)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    norm = input_gradient_sq_norm(critic(x_hat), x_hat, scale).add(1e-12).sqrt()
    return (norm - 1.0).square().mean()
