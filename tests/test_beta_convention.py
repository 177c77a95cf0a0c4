"""VAEModule's β weights the KL term (β-VAE); an objective with β' on the reconstruction is ``beta = 1/β'``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.helpers import tiny_vae


def seed_objective(module, x: torch.Tensor, beta_seed: float, seed: int) -> torch.Tensor:
    """``E[KL(q(z|x) || N(0, I))] - β'·E[log p(x|z)]`` written out by hand (Bernoulli likelihood, one sample)."""
    mu, logvar = module.encoder(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))
    logits = module.decoder(mu + torch.exp(0.5 * logvar) * eps)
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)
    return (kl - beta_seed * log_px_z).mean()


def test_beta_on_the_reconstruction_is_one_over_our_beta() -> None:
    """L' with β' = 4 equals 4 × our loss with beta = 1/4 on a tiny batch, and their gradients are proportional."""
    module = tiny_vae(beta=0.25, likelihood="bernoulli")
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = module.loss_terms(x, rng=torch.Generator().manual_seed(2), step=0)["loss"]
    ours_grads = torch.autograd.grad(ours, list(module.parameters()))
    seed = seed_objective(module, x, beta_seed=4.0, seed=2)
    seed_grads = torch.autograd.grad(seed, list(module.parameters()))
    torch.testing.assert_close(4 * ours, seed)
    for g_ours, g_seed in zip(ours_grads, seed_grads, strict=True):
        torch.testing.assert_close(4 * g_ours, g_seed)
    # and not the same objective with beta = 4 (the conventions differ)
    other = tiny_vae(beta=4.0, likelihood="bernoulli")
    other.load_state_dict(module.state_dict())
    assert not torch.allclose(other.loss_terms(x, rng=torch.Generator().manual_seed(2), step=0)["loss"], seed)
