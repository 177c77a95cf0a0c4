"""VAEModule: the β-weighted evidence lower bound under Lightning's automatic optimization.

Kingma & Welling 2013 (arXiv 1312.6114) for the VAE and the reparameterization trick; Higgins et al. 2017 (β-VAE,
ICLR) for the weight β on the KL term. Per example, in nats:
``loss = β·KL(q(z|x) || N(0, I)) - E_q[log p(x|z)]`` (one-sample estimate), ``elbo = -(recon + KL)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lit_gen.losses.vae import (
    Likelihood,
    gaussian_kl,
    importance_weighted_bound,
    likelihood_mean,
    reconstruction_nll,
    reparameterize,
)
from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.metrics.likelihood import LikelihoodMetrics
from lit_gen.modules.common import eval_mode, eval_rng, images_of, object_args_to_ignore, shape_text
from lit_gen.modules.evaluation import EvaluatesSamples, data_value_range
from lit_gen.modules.guards import NonFinitePolicy, check_policy, loss_is_finite
from lit_gen.modules.resume import ResumableRNG
from lit_gen.nets.conv_vae import ConvDecoder, ConvEncoder


class VAEOutput(NamedTuple):
    """What :meth:`VAEModule.forward` returns.

    Attributes:
        recon: decoder outputs ``(B, C, H, W)``: logits (Bernoulli) or means (Gaussian).
        mu: posterior means ``(B, latent_dim)``.
        logvar: posterior log-variances ``(B, latent_dim)``.
        z: the reparameterized sample ``(B, latent_dim)``.
    """

    recon: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


def default_adam(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam(lr=1e-3), the usual VAE default."""
    return torch.optim.Adam(params, lr=1e-3)


class VAEModule(EvaluatesSamples, ResumableRNG):
    """A VAE with a Gaussian posterior, a N(0, I) prior and a Bernoulli or Gaussian likelihood.

    Args:
        encoder: ``x (B, C, H, W) -> (mu, logvar)``, each ``(B, latent_dim)``. Default: conv encoder for 1×28×28.
        decoder: ``z (B, latent_dim) -> (B, C, H, W)`` logits (Bernoulli) or means (Gaussian). Default: conv decoder.
        latent_dim: size of ``z``; read from ``decoder.latent_dim`` when None.
        beta: weight of the KL term (1 = the ELBO; >1 = β-VAE, lower rate; <1 = lower distortion).
        likelihood: ``"bernoulli"`` (pixels in [0, 1]: set the data's value_range to [0, 1]) or ``"gaussian"``
            (fixed standard deviation ``gaussian_std``, any pixel range).
        gaussian_std: standard deviation of the Gaussian likelihood.
        optimizer: ``params -> Optimizer``; default Adam(lr=1e-3).
        lr_scheduler: ``optimizer -> LRScheduler`` stepped every epoch; None = constant.
        flush_denormal: ``torch.set_flush_denormal(True)`` at setup (denormals slow CPU training).
        nonfinite: a NaN/inf loss ``"stop"``s training with an error naming the step, or the batch is ``"skip"``ped.
        importance_samples: k of the importance-weighted estimate of log p(x) logged at test time as ``test/nll``
            and ``test/bpd`` (Burda et al. 2015, arXiv 1509.00519; 5000 in the literature); 0 = off.
        evaluation: sample metrics computed by ``trainer.test`` on the test split and as many samples, e.g.
            :class:`~lit_gen.metrics.ImageQuality`; None = likelihood metrics only.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        latent_dim: int | None = None,
        beta: float = 1.0,
        likelihood: Likelihood = "bernoulli",
        gaussian_std: float = 0.1,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        flush_denormal: bool = True,
        nonfinite: NonFinitePolicy = "stop",
        importance_samples: int = 64,
        evaluation: SampleEvaluation | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=object_args_to_ignore(
                encoder=encoder, decoder=decoder, optimizer=optimizer, lr_scheduler=lr_scheduler, evaluation=evaluation
            )
        )
        if importance_samples < 0:
            raise ValueError(f"importance_samples must be >= 0, got {importance_samples}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"unknown likelihood {likelihood!r}; choose 'bernoulli' or 'gaussian'")
        if gaussian_std <= 0:
            raise ValueError(f"gaussian_std must be > 0, got {gaussian_std}")
        self.encoder = encoder if encoder is not None else ConvEncoder(latent_dim=latent_dim or 16)
        self.decoder = decoder if decoder is not None else ConvDecoder(latent_dim=latent_dim or 16)
        dims = {getattr(self.encoder, "latent_dim", None), getattr(self.decoder, "latent_dim", None), latent_dim}
        dims.discard(None)
        if len(dims) > 1:
            raise ValueError(f"latent sizes disagree: encoder, decoder and latent_dim give {sorted(dims)}")
        if not dims:
            raise ValueError("pass latent_dim: neither the encoder nor the decoder has a `latent_dim` attribute")
        self.latent_dim = int(dims.pop())  # type: ignore[arg-type]
        self.beta = beta
        self.likelihood = likelihood
        self.gaussian_std = gaussian_std
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.flush_denormal = flush_denormal
        self.nonfinite = check_policy(nonfinite)
        self.importance_samples = importance_samples
        self.set_evaluation(evaluation)
        self.test_metrics = LikelihoodMetrics()

    # -- the model ---------------------------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W) -> (mu, logvar)``."""
        mu, logvar = self.encoder(x)
        if mu.shape != (x.shape[0], self.latent_dim) or logvar.shape != mu.shape:
            raise ValueError(
                f"the encoder must return (mu, logvar) of shape ({x.shape[0]}, {self.latent_dim}), "
                f"got {tuple(mu.shape)} and {tuple(logvar.shape)}"
            )
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """``(B, latent_dim) -> (B, C, H, W)``: the mean of p(x|z), in the data's pixel range."""
        return likelihood_mean(self.decoder(z), self.likelihood)

    def forward(self, x: Tensor, rng: torch.Generator | None = None) -> VAEOutput:
        """Encode, draw ``z`` with the reparameterization trick (from ``rng`` if given), decode."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, rng)
        recon = self.decoder(z)
        if recon.shape != x.shape:
            raise ValueError(
                f"the decoder makes {shape_text(recon.shape[1:])} images but the data is {shape_text(x.shape[1:])}: "
                f"build the nets for the data (image_shape: {list(x.shape[1:])}) or resize the data "
                "(--data.image_size)"
            )
        return VAEOutput(recon, mu, logvar, z)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """``decode(mu(x))`` in eval mode: the deterministic reconstruction ``(B, C, H, W)``."""
        with eval_mode(self):
            return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None) -> Tensor:
        """``n`` images ``(n, C, H, W)``: ``decode(z)`` with ``z ~ N(0, I)``, in eval mode."""
        with eval_mode(self):
            return self.decode(torch.randn(n, self.latent_dim, device=self.device, generator=rng))

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int = 5000, rng: torch.Generator | None = None) -> Tensor:
        """Importance-weighted estimate of ``log p(x)`` with ``k`` posterior samples: ``(B, ...) -> (B,)`` nats.

        The IWAE bound (Burda et al. 2015, arXiv 1509.00519): a lower bound that tightens towards log p(x) as k grows;
        decoded in chunks of at most 4,096 images, in eval mode.
        """
        with eval_mode(self):
            mu, logvar = self.encode(x)
            per_chunk = max(1, 4096 // len(x))
            zs, log_px_z = [], []
            for start in range(0, k, per_chunk):
                c = min(per_chunk, k - start)
                z = reparameterize(mu.expand(c, *mu.shape), logvar.expand(c, *logvar.shape), rng)  # (c, B, D)
                params = self.decoder(z.reshape(-1, self.latent_dim))
                x_rep = x.unsqueeze(0).expand(c, *x.shape).reshape(params.shape)
                nll = reconstruction_nll(params, x_rep, self.likelihood, self.gaussian_std)
                zs.append(z)
                log_px_z.append(-nll.view(c, len(x)))
            return importance_weighted_bound(torch.cat(log_px_z), torch.cat(zs), mu, logvar)

    def loss_terms(self, x: Tensor, rng: torch.Generator | None = None) -> dict[str, Tensor]:
        """Batch means, per example, in nats: ``loss``, ``recon`` (-log p(x|z)), ``kl``, ``elbo``."""
        if self.likelihood == "bernoulli" and not getattr(self, "_range_checked", False):
            low, high = float(x.min()), float(x.max())
            if low < 0 or high > 1:
                raise ValueError(
                    f"the Bernoulli likelihood needs pixels in [0, 1] but the data spans [{low:.2f}, {high:.2f}]; "
                    "set the data's value_range to [0, 1] (--data.value_range=[0,1]) or use likelihood=gaussian"
                )
            self._range_checked = True
        out = self(x, rng)
        recon = reconstruction_nll(out.recon, x, self.likelihood, self.gaussian_std).mean()
        kl = gaussian_kl(out.mu, out.logvar).mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    # -- Lightning hooks ---------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.flush_denormal:
            torch.set_flush_denormal(True)

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.nonfinite == "skip" and self.trainer.world_size > 1:
            raise ValueError(
                "VAEModule(nonfinite='skip') cannot run on several processes: Lightning refuses to skip a step in "
                "distributed automatic optimization; use nonfinite='stop' (the default) under DDP"
            )

    def configure_optimizers(self) -> Any:
        opt = (self.optimizer_factory or default_adam)(self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": self.scheduler_factory(opt)}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        terms = self.loss_terms(images_of(batch))
        if not loss_is_finite(self, "VAE loss", terms["loss"], self.nonfinite, batch_idx):
            return None  # Lightning skips the backward pass and the optimizer step
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=True)
        return terms["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", batch_idx)

    def _evaluate(self, batch: Any, stage: str, batch_idx: int) -> None:
        x, rng = images_of(batch), eval_rng(self, batch_idx)  # reproducible; leaves the training RNG alone
        terms = self.loss_terms(x, rng)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, sync_dist=True, prog_bar=stage == "val")
        if stage != "test":
            return
        log_px = self.log_likelihood(x, self.importance_samples, rng) if self.importance_samples else None
        self.test_metrics.update(x, self.reconstruct(x), self._value_range(), log_px)
        self.log_dict({f"test/{k}": m for k, m in self.test_metrics.metrics(log_px is not None).items()})
        self.update_evaluation(x, self.sample(x.shape[0], rng), batch)

    def _value_range(self) -> tuple[float, float]:
        value_range = data_value_range(self)
        if value_range is None and self.likelihood == "gaussian":
            raise ValueError(
                "the test metrics need the data's pixel range: test with a DataModule that has value_range"
            )
        return value_range or (0.0, 1.0)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """``{"inputs", "reconstructions", "samples"}``, each ``(B, C, H, W)`` in the data's pixel range."""
        x = images_of(batch)
        samples = self.sample(x.shape[0], eval_rng(self, batch_idx))
        return {"inputs": x, "reconstructions": self.reconstruct(x), "samples": samples}
