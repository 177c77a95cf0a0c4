"""Vector quantizer of the VQ-VAE (van den Oord et al. 2017, arXiv 1711.00937).

Each latent vector ``z_e`` is replaced by its nearest codebook entry ``e_k`` (squared Euclidean distance). The
decoder's gradient reaches the encoder by the straight-through estimator; the codebook learns either from the
codebook loss ``||sg(z_e) - e||²`` (``ema=False``) or, as in the paper's appendix and in VQ-VAE-2 (Razavi et al.
2019, arXiv 1906.00446), by exponential moving averages of the vectors assigned to each code, with Laplace smoothing
of the counts. Codes unused for ``restart_after`` training steps are restarted on random encoder outputs of the
current batch (the random restarts of Jukebox, Dhariwal et al. 2020, arXiv 2005.00341); with ``init_from_data`` the
codebook starts as random encoder outputs of the first training batch (Łańcucki et al. 2020, arXiv 2005.08520).

Under ``torch.distributed`` the counts and sums of the EMA update are summed over processes, and initialisation and
restart vectors are taken from rank 0, so every process holds the same codebook.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lit_gen.nets.counters import register_counters
from lit_gen.nets.init_args import RecordsInitArgs


class Quantized(NamedTuple):
    """What :class:`VectorQuantizer` returns for latents ``z_e`` of shape ``(B, D, *grid)``.

    Attributes:
        quantized: ``(B, D, *grid)``, the straight-through output: its value is exactly ``codewords`` and its gradient
            flows to ``z_e`` unchanged (and not to the codebook).
        codewords: ``(B, D, *grid)``, the chosen codebook vectors ``e_k`` (differentiable in a learned codebook).
        codes: ``(B, *grid)`` int64 indices in ``[0, num_codes)``.
        counts: ``(num_codes,)`` int64, how often each code was chosen in this batch (summed over processes in
            training under ``torch.distributed``).
    """

    quantized: Tensor
    codewords: Tensor
    codes: Tensor
    counts: Tensor


def straight_through(z_e: Tensor, codewords: Tensor) -> Tensor:
    """``sg(e) + (z_e - sg(z_e))``: the value of ``codewords`` bit for bit, the gradient of the identity to ``z_e``.

    The paper writes ``z_e + sg(e - z_e)``, whose value differs from ``e`` by rounding; this form is exact, so that
    decoding it equals decoding the codebook vectors that :func:`~lit_gen.compression` stores.
    """
    return codewords.detach() + (z_e - z_e.detach())


class VectorQuantizer(RecordsInitArgs, nn.Module):
    """Nearest-neighbour quantization of ``(B, code_dim, *grid)`` latents onto ``num_codes`` learned vectors.

    Args:
        num_codes: codebook size ``K``; a code costs ``log2 K`` bits in a fixed-length format.
        code_dim: size ``D`` of each latent vector (the channel dimension of the encoder output).
        ema: update the codebook by exponential moving averages (no gradient; the paper's appendix) instead of the
            codebook loss.
        decay: EMA decay γ (0.99 in the paper).
        epsilon: Laplace smoothing ε of the EMA counts: ``N_k <- (N_k + ε) / (N + K ε) · N``.
        restart_after: a code unused for this many consecutive training steps is restarted on a random encoder
            output of the current batch; 0 turns restarts off.
        init_from_data: at the first training step, set the codebook to random encoder outputs of that batch.
    """

    def __init__(
        self,
        num_codes: int = 512,
        code_dim: int = 64,
        ema: bool = True,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        restart_after: int = 100,
        init_from_data: bool = True,
    ) -> None:
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"num_codes and code_dim must be >= 1, got {num_codes} and {code_dim}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if epsilon < 0 or restart_after < 0:
            raise ValueError(f"epsilon and restart_after must be >= 0, got {epsilon} and {restart_after}")
        self.num_codes, self.code_dim = num_codes, code_dim
        self.ema, self.decay, self.epsilon = ema, decay, epsilon
        self.restart_after, self.init_from_data = restart_after, init_from_data
        codebook = torch.empty(num_codes, code_dim).uniform_(-1 / num_codes, 1 / num_codes)
        if ema:  # statistics of the moving averages; each code starts as if it had seen one vector at its place
            self.register_buffer("codebook", codebook)
            self.register_buffer("cluster_size", torch.ones(num_codes))
            self.register_buffer("embed_sum", codebook.clone())
        else:
            self.codebook = nn.Parameter(codebook)
        # counters and the flag are CPU state out of the buffers (weight averaging of the module must not average
        # them, and fails on a bool), saved under the same state_dict keys: :mod:`lit_gen.nets.counters`
        register_counters(
            self,
            unused_steps=torch.zeros(num_codes, dtype=torch.long),
            restarts=torch.zeros((), dtype=torch.long),
            initialized=torch.tensor(not init_from_data),
        )

    def extra_repr(self) -> str:
        return f"num_codes={self.num_codes}, code_dim={self.code_dim}, ema={self.ema}, decay={self.decay}"

    # -- lookup ------------------------------------------------------------------------------------------------------
    def nearest(self, vectors: Tensor) -> Tensor:
        """``(N, D) -> (N,)`` int64: the index of the nearest codebook vector (squared L2; the first on ties)."""
        # in float32 even under autocast: codes from bf16/fp16 distances would differ from those compress() finds
        with torch.autocast(vectors.device.type, enabled=False):
            vectors, codebook = vectors.float(), self.codebook.detach().float()
            distances = (
                vectors.square().sum(1, keepdim=True) - 2 * vectors @ codebook.t() + codebook.square().sum(1)[None, :]
            )
        return distances.argmin(1)

    def lookup(self, codes: Tensor) -> Tensor:
        """``(B, *grid)`` int64 codes -> ``(B, D, *grid)`` codebook vectors."""
        if codes.dtype != torch.long:
            raise ValueError(f"codes must be int64, got {codes.dtype}; convert them with codes.long()")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(
                f"codes must lie in [0, {self.num_codes}) for this codebook, got [{int(codes.min())}, "
                f"{int(codes.max())}]: they come from a model with another codebook size"
            )
        return self.codebook[codes].movedim(-1, 1)

    def forward(self, z_e: Tensor) -> Quantized:
        """Quantize ``(B, D, *grid)``; in training mode also update the codebook (EMA) and restart dead codes."""
        if z_e.dim() < 2 or z_e.shape[1] != self.code_dim:
            raise ValueError(
                f"the quantizer takes latents (B, {self.code_dim}, ...) but got {tuple(z_e.shape)}: set the "
                "encoder's code_dim equal to the quantizer's"
            )
        flat = z_e.movedim(1, -1).reshape(-1, self.code_dim)
        # an exported graph (to_onnx / torch.export, even of a module left in training mode) only looks codes up
        updating = self.training and not torch.compiler.is_exporting()
        if updating and not bool(self.initialized):
            self._initialize(flat.detach())
        codes_flat = self.nearest(flat.detach())
        codes = codes_flat.view(z_e.shape[0], *z_e.shape[2:])
        codewords = self.codebook[codes].movedim(-1, 1)
        counts = torch.bincount(codes_flat, minlength=self.num_codes)
        if updating:
            with torch.no_grad():
                counts = _all_reduce_sum(counts)
                if self.ema:
                    self._ema_update(flat.detach(), codes_flat, counts)
                self._restart_dead_codes(flat.detach(), counts)
        return Quantized(straight_through(z_e, codewords), codewords, codes, counts)

    # -- training-time updates ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _initialize(self, flat: Tensor) -> None:
        vectors = _from_rank_zero(_random_rows(flat, self.num_codes))
        self.codebook.data.copy_(vectors)
        if self.ema:
            self.cluster_size.fill_(1.0)
            self.embed_sum.copy_(vectors)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, codes: Tensor, counts: Tensor) -> None:
        """``N <- γN + (1-γ)n``, ``m <- γm + (1-γ)Σz``, ``e = m / N̂`` with Laplace-smoothed ``N̂``."""
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat.to(self.embed_sum.dtype))
        sums = _all_reduce_sum(sums)
        self.cluster_size.mul_(self.decay).add_(counts.to(self.cluster_size.dtype), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _restart_dead_codes(self, flat: Tensor, counts: Tensor) -> None:
        self.unused_steps.add_(1).masked_fill_((counts > 0).cpu(), 0)  # the host sync of `dead` below, earlier
        if self.restart_after == 0:
            return
        dead = (self.unused_steps >= self.restart_after).nonzero().flatten()  # on the CPU
        if dead.numel() == 0:
            return
        vectors = _from_rank_zero(_random_rows(flat, dead.numel()))
        self.unused_steps[dead] = 0
        dead = dead.to(self.codebook.device)
        self.codebook.data[dead] = vectors.to(self.codebook.dtype)
        if self.ema:
            self.cluster_size[dead] = 1.0
            self.embed_sum[dead] = vectors.to(self.embed_sum.dtype)
        self.restarts.add_(dead.numel())


def _random_rows(flat: Tensor, n: int) -> Tensor:
    """``n`` rows of ``flat`` drawn at random (without replacement when there are enough), from torch's RNG."""
    if flat.shape[0] >= n:
        index = torch.randperm(flat.shape[0], device=flat.device)[:n]
    else:
        index = torch.randint(flat.shape[0], (n,), device=flat.device)
    return flat[index].clone()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(tensor: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(tensor)
    return tensor


def _from_rank_zero(tensor: Tensor) -> Tensor:
    """The same tensor on every process: rank 0's (every process must pass one of the same shape)."""
    if _distributed():
        dist.broadcast(tensor, src=0)
    return tensor
