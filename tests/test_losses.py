from __future__ import annotations

import math

import pytest
import torch

from lit_gen.losses import gan as G
from lit_gen.losses.penalties import gradient_penalty, r1_penalty
from lit_gen.losses.vae import bernoulli_nll, gaussian_kl, gaussian_nll, reparameterize

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_minimax_discriminator_is_minus_the_value_function() -> None:
    # V(D, G) = E[log D(x)] + E[log(1 - D(G(z)))], D maximises V, so its loss is -V.
    value = (math.log(sig(2.0)) + math.log(sig(-1.0))) / 2 + (math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))) / 2
    assert G.minimax_discriminator_loss(REAL, FAKE).item() == pytest.approx(-value, rel=1e-6)


def test_minimax_generator_minimises_log_one_minus_d() -> None:
    expected = (math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))) / 2
    assert G.minimax_generator_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_non_saturating_generator() -> None:
    expected = -(math.log(sig(0.5)) + math.log(sig(-3.0))) / 2
    assert G.non_saturating_generator_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_minimax_generator_saturates_where_non_saturating_does_not() -> None:
    fake = torch.tensor([-10.0], requires_grad=True)  # D confidently rejects the fake
    (g_sat,) = torch.autograd.grad(G.minimax_generator_loss(fake), fake)
    (g_ns,) = torch.autograd.grad(G.non_saturating_generator_loss(fake), fake)
    assert abs(g_sat.item()) < 1e-4 < 0.99 < abs(g_ns.item())


def test_wasserstein() -> None:
    assert G.wasserstein_discriminator_loss(REAL, FAKE).item() == pytest.approx((0.5 - 3.0) / 2 - (2.0 - 1.0) / 2)
    assert G.wasserstein_generator_loss(FAKE).item() == pytest.approx(1.25)


def test_hinge() -> None:
    # relu(1 - 2) = 0, relu(1 + 1) = 2; relu(1 + 0.5) = 1.5, relu(1 - 3) = 0
    assert G.hinge_discriminator_loss(REAL, FAKE).item() == pytest.approx(1.0 + 0.75)


def test_least_squares() -> None:
    d = 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 3.0**2) / 2
    g = 0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2
    assert G.least_squares_discriminator_loss(REAL, FAKE).item() == pytest.approx(d)
    assert G.least_squares_generator_loss(FAKE).item() == pytest.approx(g)


def test_unknown_loss_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'.*hinge.*minimax"):
        G.get_gan_loss("wgan")


def test_r1_on_a_linear_discriminator_is_the_squared_weight_norm() -> None:
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(5, 2, requires_grad=True)
    assert r1_penalty(x @ w, x).item() == pytest.approx(25.0)


def test_gradient_penalty_of_a_linear_critic() -> None:
    w = torch.tensor([3.0, 4.0])  # ||grad|| = 5 everywhere, so the penalty is (5 - 1)^2
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert gradient_penalty(lambda x: x @ w, real, fake).item() == pytest.approx(16.0, rel=1e-5)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic() -> None:
    w = torch.tensor([0.6, 0.8])
    assert gradient_penalty(lambda x: x @ w, torch.randn(4, 2), torch.randn(4, 2)).item() == pytest.approx(0, abs=1e-6)


def test_reparameterization_gradients() -> None:
    mu = torch.tensor([[0.5, -1.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    rng = torch.Generator().manual_seed(3)
    z = reparameterize(mu, logvar, rng)
    eps = torch.randn(1, 2, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(z, mu + torch.tensor([[1.0, 2.0]]) * eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(1, 2))  # dz/dmu = 1
    assert torch.allclose(logvar.grad, 0.5 * torch.tensor([[1.0, 2.0]]) * eps)  # dz/dlogvar = sigma * eps / 2


def test_closed_form_kl_matches_monte_carlo() -> None:
    mu, logvar = torch.tensor([[0.7, -0.3, 1.2]]), torch.tensor([[-0.5, 0.4, 0.1]])
    z = reparameterize(mu.expand(400_000, 3), logvar.expand(400_000, 3), torch.Generator().manual_seed(0))
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(1).mean()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(mc.item(), abs=0.01)
    assert gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).tolist() == [0.0, 0.0]


def test_bernoulli_nll_by_hand() -> None:
    logits, x = torch.tensor([[[[0.0, 2.0]]]]), torch.tensor([[[[1.0, 0.0]]]])
    expected = -math.log(0.5) - math.log(1 - sig(2.0))
    assert bernoulli_nll(logits, x).item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_nll_matches_torch_distributions() -> None:
    mean, x = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    ref = -torch.distributions.Normal(mean, 0.3).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_nll(mean, x, 0.3), ref, atol=1e-5)
