"""Hand-written PyTorch loops that do, step for step, what ``GANModule`` and ``VAEModule`` do: the baseline of
``scripts/bench_speed.py``. Plain torch only (no Lightning, no lit_gen): the nets and optimizers are passed in.

What each step does, in the module's order (so that the same weights, noise and batches give the same losses):

- GAN (``GANModule``, Goodfellow et al. 2014, arXiv 1406.2661; DCGAN, arXiv 1511.06434): ``n_critic`` times a
  discriminator step (G frozen, ``zero_grad(set_to_none=True)``, ``z ~ N(0, I)`` drawn on the device from the global
  generator, ``G(z)`` under ``no_grad`` in train mode, ``D(real)`` then ``D(fake)``, the loss from logits, backward,
  step), then one generator step (D frozen, fresh ``z``, ``-E[log sigmoid(D(G(z)))]`` for ``non_saturating``).
- VAE (``VAEModule``, Kingma & Welling 2013, arXiv 1312.6114): ``(mu, logvar) = enc(x)``,
  ``z = mu + exp(logvar / 2)·eps`` with one ``randn`` of shape ``(B, D)``, Bernoulli ``-log p(x|z)`` from the
  decoder's logits summed per image, closed-form KL, ``loss = recon + β·KL`` (batch means), backward, step.
- Pixels: uint8 ``(B, C, H, W)`` moved to the device, then ``float().mul_((high - low) / 255).add_(low)``.
- Mixed precision as Lightning's ``MixedPrecision`` plugin: ``torch.autocast(cache_enabled=False)`` around the GAN's
  whole step (Lightning's autocast wraps ``training_step``, optimizer steps included) and around the VAE's forward
  pass; for fp16 a ``GradScaler`` scales each loss, unscales, steps and updates after every optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Amp:
    """Precision of a plain loop: ``dtype`` None is float32; ``scaler`` is the fp16 GradScaler (None otherwise)."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> AbstractContextManager:
        """``torch.autocast`` without its cache of cast weights, as Lightning's plugin: a step inside the region
        changes the weights, and a cached cast would hand the next forward pass the old ones."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False)

    def backward_and_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``backward`` and ``step``, through the GradScaler under fp16 (scale, unscale, step, update)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        self.scaler.step(optimizer)
        self.scaler.update()


def to_float(images: Tensor, value_range: tuple[float, float]) -> Tensor:
    """uint8 pixels -> floats in ``value_range`` (the same two in-place ops as lit_gen's DataModules)."""
    low, high = value_range
    return images.float().mul_((high - low) / 255.0).add_(low)


class Batches:
    """Batches of an in-memory uint8 tensor ``(N, C, H, W)``, as float ``(B, C, H, W)`` in ``value_range``.

    Shuffled batches follow ``torch.randperm(N)`` from a generator seeded with ``seed + epoch`` (the order lit_gen's
    ``EpochSeededRandomSampler`` gives); the last incomplete batch is dropped when ``drop_last``.

    Args:
        images: uint8 ``(N, C, H, W)``; moved to ``device`` once when ``resident`` (a hand-written loop on a GPU keeps
            a small dataset there), else each batch is moved after indexing, as a DataLoader does.
        batch_size: images per batch.
        device: where the batches are used.
        value_range: ``(low, high)`` of the float pixels.
        seed: seed of the per-epoch shuffling (the data seed).
        shuffle: shuffle every epoch (training) or keep the order (evaluation).
        drop_last: drop the last incomplete batch.
        resident: keep the uint8 tensor on ``device``.
        labels: ``(N,)`` labels of the images, for :meth:`labelled` (sample metrics with class coverage).
        channels_last: return batches in ``torch.channels_last`` memory format.
    """

    def __init__(
        self,
        images: Tensor,
        batch_size: int,
        device: torch.device,
        value_range: tuple[float, float],
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        resident: bool = True,
        labels: Tensor | None = None,
        channels_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images.to(device) if resident else images
        self.labels = None if labels is None else (labels.to(device) if resident else labels)
        self.batch_size, self.device, self.value_range = batch_size, device, value_range
        self.seed, self.shuffle, self.drop_last, self.channels_last = seed, shuffle, drop_last, channels_last

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int = 0, limit: int | None = None) -> Iterator[Tensor]:
        """The float batches of ``epoch``: ``limit`` of them at most."""
        for x, _ in self.labelled(epoch, limit):
            yield x

    def labelled(self, epoch: int = 0, limit: int | None = None) -> Iterator[tuple[Tensor, Tensor | None]]:
        """``(float images, labels or None)`` batches of ``epoch``: ``limit`` of them at most."""
        n = len(self.images)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch)) if self.shuffle else None
        if order is not None:
            order = order.to(self.images.device)
        count = len(self) if limit is None else min(limit, len(self))
        for i in range(count):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            index = order[rows] if order is not None else rows
            x = to_float(self.images[index].to(self.device, non_blocking=True), self.value_range)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, (self.labels[index].to(self.device) if self.labels is not None else None)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``-(E[log sigmoid(real)] + E[log(1 - sigmoid(fake))])`` from logits (minimax and non-saturating)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


GENERATOR_LOSSES: dict[str, Callable[[Tensor], Tensor]] = {
    "non_saturating": lambda fake: F.softplus(-fake).mean(),
    "minimax": lambda fake: -F.softplus(fake).mean(),
}


OnBatch = Callable[[Tensor, Tensor, "Tensor | None"], None]  # (real, generated, labels) -> None: a sample metric


class PlainGAN:
    """A GAN trained by hand: ``n_critic`` discriminator steps, then one generator step, per batch.

    Args:
        generator: ``z (B, latent_dim) -> (B, C, H, W)``.
        discriminator: ``(B, C, H, W) -> logits (B,)`` or ``(B, 1)``.
        g_opt: optimizer of the generator's parameters.
        d_opt: optimizer of the discriminator's parameters.
        latent_dim: size of ``z``.
        loss: ``non_saturating`` or ``minimax``.
        n_critic: discriminator steps per batch.
        amp: precision (autocast dtype, GradScaler).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_opt: torch.optim.Optimizer,
        d_opt: torch.optim.Optimizer,
        latent_dim: int,
        loss: str = "non_saturating",
        n_critic: int = 1,
        amp: Amp | None = None,
    ) -> None:
        if loss not in GENERATOR_LOSSES:
            raise ValueError(f"the plain GAN loop implements {sorted(GENERATOR_LOSSES)}, not {loss!r}")
        self.generator, self.discriminator, self.g_opt, self.d_opt = generator, discriminator, g_opt, d_opt
        self.latent_dim, self.generator_loss, self.n_critic = latent_dim, GENERATOR_LOSSES[loss], n_critic
        self.amp = amp or Amp()

    def noise(self, n: int, device: torch.device, rng: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=rng)

    def step(self, real: Tensor) -> tuple[Tensor, Tensor]:
        """One training iteration on a float batch; returns the detached ``(d_loss, g_loss)``."""
        G, D, n = self.generator, self.discriminator, real.shape[0]
        with self.amp.autocast():
            set_requires_grad(G, False)
            for _ in range(self.n_critic):
                self.d_opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    fake = G(self.noise(n, real.device))
                d_loss = discriminator_loss(D(real).reshape(-1), D(fake).reshape(-1))
                self.amp.backward_and_step(d_loss, self.d_opt)
            set_requires_grad(G, True)
            set_requires_grad(D, False)
            self.g_opt.zero_grad(set_to_none=True)
            g_loss = self.generator_loss(D(G(self.noise(n, real.device))).reshape(-1))
            self.amp.backward_and_step(g_loss, self.g_opt)
            set_requires_grad(D, True)
        return d_loss.detach(), g_loss.detach()

    def train(self, batches: Iterator[Tensor]) -> tuple[int, Tensor]:
        """Train on every batch; returns ``(images, losses (steps, 2))`` (read once, at the end: no host sync)."""
        images, losses = 0, []
        for real in batches:
            losses.append(torch.stack(self.step(real)))
            images += real.shape[0]
        return images, torch.stack(losses)

    @torch.inference_mode()
    def evaluate(
        self, batches: Iterable[tuple[Tensor, Tensor | None]], on_batch: OnBatch | None = None
    ) -> dict[str, float]:
        """Batch-size-weighted means of ``d_loss``, ``g_loss``, ``d_real``, ``d_fake`` in eval mode; the noise of
        batch ``i`` comes from a generator seeded with ``i`` (as lit_gen's evaluation). ``on_batch(real, fake,
        labels)`` feeds a sample metric."""
        G, D = self.generator, self.discriminator
        modes = G.training, D.training
        G.eval(), D.eval()
        sums, count = torch.zeros(4, dtype=torch.float64), 0
        try:
            for i, (real, labels) in enumerate(batches):
                rng = torch.Generator(device=real.device).manual_seed(i)
                with self.amp.autocast():
                    fake = G(self.noise(real.shape[0], real.device, rng))
                    real_logits, fake_logits = D(real).reshape(-1), D(fake).reshape(-1)
                    d_loss = discriminator_loss(real_logits, fake_logits)
                    g_loss = self.generator_loss(fake_logits)
                    values = torch.stack([d_loss, g_loss, real_logits.mean(), fake_logits.mean()])
                sums += values.double().cpu() * real.shape[0]
                count += real.shape[0]
                if on_batch is not None:
                    on_batch(real, fake, labels)
        finally:
            G.train(modes[0]), D.train(modes[1])
        return dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), (sums / count).tolist(), strict=True))


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-log p(x|z)`` per image ``(B,)`` under Bernoulli(sigmoid(logits)), pixels in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def kl_per_image(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` per image ``(B,)``."""
    return (0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)).sum(1)


def log_normal(z: Tensor, mu: Tensor | None = None, logvar: Tensor | None = None) -> Tensor:
    """``log N(z; mu, exp(logvar))`` summed over the last dim (standard normal without ``mu``)."""
    if mu is None or logvar is None:
        return -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)
    return -0.5 * ((z - mu).square() * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)


class PlainVAE:
    """A Bernoulli VAE trained by hand on ``recon + β·KL`` (one posterior sample per image).

    Args:
        encoder: ``(B, C, H, W) -> (mu, logvar)``, each ``(B, D)``.
        decoder: ``z (B, D) -> logits (B, C, H, W)``.
        optimizer: optimizer of both nets' parameters.
        beta: weight of the KL term.
        amp: precision (autocast dtype, GradScaler).
    """

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, optimizer: torch.optim.Optimizer, beta: float = 1.0,
        amp: Amp | None = None,
    ) -> None:  # fmt: skip
        self.encoder, self.decoder, self.optimizer, self.beta = encoder, decoder, optimizer, beta
        self.amp = amp or Amp()

    def terms(self, x: Tensor, rng: torch.Generator | None = None) -> dict[str, Tensor]:
        """Batch means: ``loss``, ``recon``, ``kl``, ``elbo``."""
        mu, logvar = self.encoder(x)
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device, generator=rng)
        z = mu + torch.exp(0.5 * logvar) * eps
        recon = bernoulli_nll(self.decoder(z), x).mean()
        kl = kl_per_image(mu, logvar).mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def step(self, x: Tensor) -> Tensor:
        """One training step on a float batch in [0, 1]; returns the detached ``(loss, recon, kl)``."""
        with self.amp.autocast():
            terms = self.terms(x)
        self.optimizer.zero_grad(set_to_none=True)
        self.amp.backward_and_step(terms["loss"], self.optimizer)
        return torch.stack([terms["loss"].detach(), terms["recon"].detach(), terms["kl"].detach()])

    def train(self, batches: Iterator[Tensor]) -> tuple[int, Tensor]:
        """Train on every batch; returns ``(images, losses (steps, 3))``."""
        images, losses = 0, []
        for x in batches:
            losses.append(self.step(x))
            images += x.shape[0]
        return images, torch.stack(losses)

    @torch.inference_mode()
    def evaluate(
        self,
        batches: Iterable[tuple[Tensor, Tensor | None]],
        importance_samples: int = 0,
        on_batch: OnBatch | None = None,
    ) -> dict[str, float]:
        """Means over the images, in eval mode, of what ``VAEModule`` logs: ``loss``, ``recon``, ``kl``, ``elbo`` (as
        in validation); with ``importance_samples = k > 0`` also the test metrics ``nll``, ``bpd`` (IWAE, Burda et al.
        2015, arXiv 1509.00519), ``mse``, ``psnr``, ``rate`` (bits) of ``decode(mu)``. ``on_batch(real, samples,
        labels)`` gets as many prior samples as images. Batch ``i`` draws all its noise from a generator seeded with
        ``i``, in VAEModule's order: the posterior sample, the prior samples, the importance samples."""
        enc, dec = self.encoder, self.decoder
        modes = enc.training, dec.training
        enc.eval(), dec.eval()
        names = ["loss", "recon", "kl", "elbo"] + (["nll", "bpd", "mse", "psnr", "rate"] if importance_samples else [])
        sums, count = torch.zeros(len(names), dtype=torch.float64), 0
        try:
            for i, (x, labels) in enumerate(batches):
                rng = torch.Generator(device=x.device).manual_seed(i)
                with self.amp.autocast():
                    values = list(self.terms(x, rng).values())
                    if on_batch is not None:  # prior samples for a sample metric, drawn next (as VAEModule)
                        z = torch.randn(x.shape[0], self.decoder.latent_dim, device=x.device, generator=rng)
                        on_batch(x, torch.sigmoid(self.decoder(z)), labels)
                    if importance_samples:
                        values += self._test_terms(x, importance_samples, rng)
                sums += torch.stack([v.double().mean() for v in values]).cpu() * x.shape[0]
                count += x.shape[0]
        finally:
            enc.train(modes[0]), dec.train(modes[1])
        return dict(zip(names, (sums / count).tolist(), strict=True))

    def _test_terms(self, x: Tensor, k: int, rng: torch.Generator) -> list[Tensor]:
        """Per-image ``nll``, ``bpd``, ``mse``, ``psnr``, ``rate``."""
        mu, logvar = self.encoder(x)
        b, d = mu.shape
        log_w_parts = []
        per_chunk = max(1, 4096 // b)  # decoded in chunks of at most 4,096 images, as VAEModule.log_likelihood
        for start in range(0, k, per_chunk):
            m = min(per_chunk, k - start)
            eps = torch.randn((m, b, d), dtype=mu.dtype, device=mu.device, generator=rng)
            z = mu.expand(m, b, d) + torch.exp(0.5 * logvar.expand(m, b, d)) * eps
            x_rep = x.unsqueeze(0).expand(m, *x.shape).reshape(m * b, *x.shape[1:])
            log_px_z = -bernoulli_nll(self.decoder(z.reshape(-1, d)), x_rep).view(m, b)
            log_w_parts.append(log_px_z + log_normal(z) - log_normal(z, mu, logvar))
        nll = -(torch.logsumexp(torch.cat(log_w_parts), dim=0) - math.log(k))
        bpd = nll / (x[0].numel() * math.log(2))
        mu, logvar = self.encoder(x)  # the rate, and the distortion of decode(mu)
        recon = torch.sigmoid(self.decoder(mu)).clamp(0.0, 1.0)
        mse = (recon.float() - x.float()).square().flatten(1).mean(1)
        psnr = 10 * torch.log10(1.0 / mse.clamp(min=1e-12))
        rate = kl_per_image(mu, logvar) / math.log(2)
        return [nll, bpd, mse, psnr, rate]
