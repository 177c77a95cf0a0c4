"""The vector quantizer (lookup, straight-through, EMA, restarts), its losses and the VQ conv nets."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from lit_gen.losses.vq import codebook_loss, commitment_loss, perplexity, squared_error
from lit_gen.nets import VectorQuantizer, VQDecoder, VQEncoder


def quantizer_with(codebook: list[list[float]], **kwargs: object) -> VectorQuantizer:
    """A quantizer whose codebook (and EMA statistics: one vector at each code) is ``codebook``."""
    rows = torch.tensor(codebook)
    q = VectorQuantizer(num_codes=rows.shape[0], code_dim=rows.shape[1], init_from_data=False, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        q.codebook.copy_(rows)
        if q.ema:
            q.embed_sum.copy_(rows)
            q.cluster_size.fill_(1.0)
    return q


def test_nearest_code_and_ties_pick_the_first() -> None:
    q = quantizer_with([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]).eval()
    z = torch.tensor([[0.1, 0.1], [0.9, -0.3], [0.2, 1.5], [0.5, 0.0], [5.0, 0.0]])  # (0.5, 0): tie of codes 0 and 1
    assert q.nearest(z).tolist() == [0, 1, 2, 0, 1]
    out = q(z.t().reshape(1, 2, 5))  # (B, D, grid)
    assert out.codes.tolist() == [[0, 1, 2, 0, 1]] and out.counts.tolist() == [2, 2, 1]
    assert torch.equal(out.codewords[0].t(), q.codebook[[0, 1, 2, 0, 1]])


def test_straight_through_gives_the_encoder_the_gradient_of_the_quantized_output() -> None:
    torch.manual_seed(0)
    encoder, decoder = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 1, 3, padding=1)
    q = VectorQuantizer(num_codes=8, code_dim=3, ema=False, restart_after=0)
    x = torch.randn(2, 1, 5, 5)
    z_e = encoder(x)
    z_e.retain_grad()
    out = q(z_e)
    out.quantized.retain_grad()
    decoder(out.quantized).square().sum().backward()
    assert torch.equal(out.quantized, out.codewords)  # the value is the codebook's, bit for bit
    assert torch.equal(z_e.grad, out.quantized.grad)  # ... and the gradient passes through unchanged
    assert z_e.grad.abs().sum() > 0 and encoder.weight.grad.abs().sum() > 0
    assert q.codebook.grad is None  # the decoder's gradient does not reach the codebook


def test_losses_by_hand_and_where_their_gradients_go() -> None:
    z_e = torch.tensor([[[1.0, 2.0]], [[0.0, -1.0]]], requires_grad=True)  # (B=2, D=1, grid 2)
    e = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]], requires_grad=True)
    assert commitment_loss(z_e, e).tolist() == [5.0, 5.0]
    commitment_loss(z_e, e).sum().backward()
    assert e.grad is None and z_e.grad.tolist() == [[[2.0, 4.0]], [[-2.0, -4.0]]]
    z_e.grad = None
    assert codebook_loss(z_e, e).tolist() == [5.0, 5.0]
    codebook_loss(z_e, e).sum().backward()
    assert z_e.grad is None and e.grad.tolist() == [[[-2.0, -4.0]], [[2.0, 4.0]]]
    assert squared_error(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)).tolist() == [4.0, 4.0]


def test_perplexity_is_the_effective_number_of_codes() -> None:
    assert perplexity(torch.tensor([5, 0, 0, 0])).item() == pytest.approx(1.0)
    assert perplexity(torch.tensor([3, 3, 3, 3])).item() == pytest.approx(4.0)
    assert perplexity(torch.tensor([2, 2, 0, 0])).item() == pytest.approx(2.0)
    assert perplexity(torch.tensor([3, 1])).item() == pytest.approx(
        math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    )


def test_ema_update_equals_the_closed_form() -> None:
    # codes 0 and 1 at 0 and 10; the batch 1, 2 -> code 0 and 9 -> code 1; γ = 0.5, ε = 0.1
    q = quantizer_with([[0.0], [10.0]], decay=0.5, epsilon=0.1, restart_after=0).train()
    out = q(torch.tensor([[[1.0, 2.0, 9.0]]]))
    assert out.codes.tolist() == [[0, 0, 1]]
    # N = 0.5·1 + 0.5·(2, 1) = (1.5, 1); m = 0.5·(0, 10) + 0.5·(3, 9) = (1.5, 9.5)
    assert q.cluster_size.tolist() == [1.5, 1.0] and q.embed_sum.flatten().tolist() == [1.5, 9.5]
    # Laplace: N̂ = (N + ε) / (ΣN + Kε) · ΣN = (1.6, 1.1) / 2.7 · 2.5; e = m / N̂
    expected = [1.5 / (1.6 / 2.7 * 2.5), 9.5 / (1.1 / 2.7 * 2.5)]
    assert q.codebook.flatten().tolist() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(out.codewords.flatten(), torch.tensor([0.0, 0.0, 10.0]))  # chosen before the update
    q_plain = quantizer_with([[0.0], [10.0]], decay=0.5, epsilon=0.0, restart_after=0).train()
    q_plain(torch.tensor([[[1.0, 2.0, 9.0]]]))
    assert q_plain.codebook.flatten().tolist() == pytest.approx([1.0, 9.5])  # no smoothing: m / N


def test_eval_mode_leaves_the_codebook_alone() -> None:
    q = quantizer_with([[0.0], [10.0]], restart_after=1).eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q(torch.tensor([[[1.0, 2.0, 3.0]]]))
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())


@pytest.mark.parametrize("ema", [True, False])
def test_dead_codes_are_restarted_on_encoder_outputs(ema: bool) -> None:
    q = quantizer_with([[0.0, 0.0], [100.0, 100.0], [100.0, -100.0], [-100.0, 100.0]], restart_after=2, ema=ema)
    torch.manual_seed(0)
    first, second = torch.randn(1, 2, 8), torch.randn(1, 2, 8)  # every vector is nearest to code 0
    q.train()
    q(first)
    assert q.unused_steps.tolist() == [0, 1, 1, 1] and q.restarts.item() == 0
    q(second)  # codes 1-3 unused for 2 steps: restarted on vectors of this batch
    assert q.restarts.item() == 3 and q.unused_steps.tolist() == [0, 0, 0, 0]
    batch_vectors = second[0].t()
    for k in (1, 2, 3):
        assert any(torch.equal(q.codebook[k], v) for v in batch_vectors), k
    assert len({tuple(q.codebook[k].tolist()) for k in (1, 2, 3)}) == 3  # drawn without replacement
    if ema:
        assert q.cluster_size[1:].tolist() == [1.0, 1.0, 1.0] and torch.equal(q.embed_sum[1:], q.codebook[1:])
    assert (q(second).counts[1:] > 0).all()  # the restarted codes are used now


def test_the_codebook_starts_as_encoder_outputs_of_the_first_batch() -> None:
    q = VectorQuantizer(num_codes=4, code_dim=2, ema=False, init_from_data=True).train()
    batch = torch.randn(1, 2, 10)
    q(batch)
    assert bool(q.initialized)
    vectors = batch[0].t()
    assert all(any(torch.equal(row, v) for v in vectors) for row in q.codebook)
    before = q.codebook.detach().clone()
    q(torch.randn(1, 2, 10) + 50)  # not initialised again
    assert torch.equal(q.codebook.detach(), before)


def test_wrong_code_dim_is_named() -> None:
    with pytest.raises(ValueError, match=r"takes latents \(B, 4, \.\.\.\) .* code_dim"):
        VectorQuantizer(num_codes=8, code_dim=4)(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="decay must be in"):
        VectorQuantizer(decay=1.0)


@pytest.mark.parametrize(("shape", "downsample", "grid"), [((1, 8, 8), None, 4), ((1, 28, 28), None, 7),
                                                            ((3, 32, 32), None, 8), ((3, 32, 32), 3, 4)])  # fmt: skip
def test_vq_nets_make_a_grid_of_latents_and_invert_its_shape(shape, downsample, grid) -> None:
    encoder = VQEncoder(shape, code_dim=5, width=8, downsample=downsample)
    decoder = VQDecoder(5, shape, width=8, downsample=downsample)
    z = encoder(torch.rand(2, *shape))
    assert z.shape == (2, 5, grid, grid) and encoder.grid == decoder.grid == (grid, grid)
    assert decoder(z).shape == (2, *shape)


def test_too_many_stages_are_refused() -> None:
    with pytest.raises(ValueError, match="downsample must be between 1 and 2 for 28×28"):
        VQEncoder((1, 28, 28), downsample=3)


def test_nets_and_compression_import_no_lightning() -> None:
    code = "import sys, lit_gen.nets, lit_gen.compression; assert 'lightning' not in sys.modules, 'lightning'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nearest_code_is_chosen_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=512, code_dim=16, init_from_data=False)
    vectors = torch.randn(4096, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = vq.nearest(vectors)
    assert torch.equal(under_autocast, vq.nearest(vectors))
