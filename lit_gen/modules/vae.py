"""VAEModule: the β-weighted evidence lower bound under Lightning's automatic optimization.

Kingma & Welling 2013 (arXiv 1312.6114) for the VAE and the reparameterization trick; Higgins et al. 2017 (β-VAE,
ICLR) for the weight β on the KL term; KL warm-up (Bowman et al. 2016, arXiv 1511.06349), cyclical annealing (Fu et
al. 2019, arXiv 1903.10145) and controlled capacity (Burgess et al. 2018, arXiv 1804.03599) as schedules of it; free
bits (Kingma et al. 2016, arXiv 1606.04934); the IWAE objective (Burda et al. 2015, arXiv 1509.00519); conditional
VAEs (Sohn et al. 2015). Per example, in nats:
``loss = β_t·KL(q(z|x) || N(0, I)) - E_q[log p(x|z)]`` (one-sample estimate), ``elbo = -(recon + KL)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lit_gen.losses.schedules import BetaSchedule, beta_at, capacity_at, check_schedule
from lit_gen.losses.vae import (
    Likelihood,
    free_bits_kl,
    gaussian_kl,
    gaussian_kl_per_dim,
    importance_weighted_bound,
    likelihood_mean,
    params_per_pixel,
    reconstruction_nll,
    reparameterize,
)
from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.metrics.likelihood import LikelihoodMetrics
from lit_gen.modules.autoencoder import AutoencoderModule
from lit_gen.modules.common import (
    eval_mode,
    eval_rng,
    images_of,
    logs_this_step,
    required_labels,
    save_init_hyperparameters,
)
from lit_gen.modules.evaluation import EvaluatesSamples
from lit_gen.modules.guards import NonFinitePolicy, loss_is_finite
from lit_gen.modules.latent import LatentTools
from lit_gen.modules.speed import speed_up, use_channels_last
from lit_gen.modules.vae_checks import (
    check_decoder_output,
    check_objective,
    net_sizes,
)
from lit_gen.nets.conv_vae import ConvDecoder, ConvEncoder

STEP_KEY = "lit_gen_vae_step"
PredictOutput = Literal["inputs", "reconstructions", "samples", "pairs", "interpolations", "traversals"]
PREDICT_OUTPUTS: tuple[str, ...] = ("inputs", "reconstructions", "samples", "pairs", "interpolations", "traversals")


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


class VAEModule(LatentTools, EvaluatesSamples, AutoencoderModule):
    """A VAE with a Gaussian posterior, a N(0, I) prior and a Bernoulli, Gaussian or discretized-logistic likelihood.

    ``beta`` weights the KL term, as in the β-VAE paper. An objective that puts its β' on the reconstruction
    instead, ``L' = E[KL(q(z|x) || p(z))] - β'·E[log p(x|z)]``, is this one up to a positive scale:
    ``L' = β'·(KL/β' - E[log p(x|z)])``, so minimizing ``L'`` is minimizing this module's loss with
    ``beta = 1/β'`` (``L' = β'·loss``, the gradients in the same proportion; an optimizer's learning rate, or Adam's
    scale invariance, absorbs the factor). β' = 4 is ``beta=0.25``.

    Args:
        encoder: ``x (B, C, H, W) -> (mu, logvar)``, each ``(B, latent_dim)``; ``encoder(x, labels)`` when it has
            ``num_classes > 0``. Default: conv encoder for 1×28×28.
        decoder: ``z (B, latent_dim) -> (B, k·C, H, W)``: logits (Bernoulli), means (Gaussian) or location and
            log-scale per pixel (discretized logistic, k = 2); ``decoder(z, labels)`` when conditional.
        latent_dim: size of ``z``; read from ``decoder.latent_dim`` when None.
        beta: weight of the KL term (1 = the ELBO; >1 = β-VAE, lower rate; <1 = lower distortion); with
            ``capacity`` it is Burgess et al.'s γ.
        beta_schedule: ``constant``, ``linear`` (warm-up from 0 to ``beta`` over ``beta_warmup_steps``) or
            ``cyclical`` (Fu et al.: cycles of ``beta_cycle_steps``, rising over their first ``beta_cycle_ratio``).
        beta_warmup_steps: length of the linear warm-up, in training batches.
        beta_cycle_steps: length of one cycle of the cyclical schedule, in training batches.
        beta_cycle_ratio: share of each cycle spent rising (0.5 in the paper).
        capacity: controlled capacity (Burgess et al. 2018): the KL term becomes ``beta·|KL - C|`` with the target
            ``C`` raised linearly to ``capacity`` nats over ``capacity_steps``; None = off.
        capacity_steps: training batches over which ``C`` grows from 0 to ``capacity``.
        free_bits: λ of free bits (Kingma et al. 2016): each latent dimension's batch-mean KL counts as at least λ
            nats in the loss (0 = off). The logged ``kl`` stays the true KL.
        iwae_samples: k > 1 trains the IWAE bound with k posterior samples (Burda et al. 2015) instead of the ELBO;
            it has no KL weight, so it needs ``beta=1`` and no schedule, capacity or free bits.
        likelihood: ``bernoulli`` (pixels in [0, 1]), ``gaussian`` (any range; std ``gaussian_std``) or
            ``discretized_logistic`` (8-bit pixels in the data's ``value_range``; the decoder outputs 2·C channels).
        gaussian_std: standard deviation of the Gaussian likelihood; None = learned, one value shared by all pixels
            (σ-VAE, Rybkin et al. 2021, arXiv 2006.13202).
        optimizer: ``params -> Optimizer``; default Adam(lr=1e-3).
        lr: learning rate of all parameter groups, overriding ``optimizer``'s (None = its own); Lightning's
            learning-rate finder (``Tuner(trainer).lr_find``, the ``LearningRateFinder`` callback) sets it.
        lr_scheduler: ``optimizer -> LRScheduler`` stepped every epoch; None = constant.
        flush_denormal: ``torch.set_flush_denormal(True)`` at setup (denormals slow CPU training).
        compile: ``torch.compile`` the networks (``nn.Module.compile``: checkpoints keep their keys); for long
            GPU runs, the first steps pay tens of seconds of compilation.
        channels_last: store the networks' conv weights channels-last (faster convolutions under mixed precision).
            None (automatic) = on when the Trainer computes in bf16/fp16 on a CUDA GPU or in bf16 on a CPU with
            native bf16 (AMX / AVX-512 BF16), decided at setup; True/False force it.
        nonfinite: a NaN/inf loss ``"stop"``s training with an error naming the step, or the batch is ``"skip"``ped.
        importance_samples: k of the importance-weighted estimate of log p(x) logged at test time as ``test/nll``
            and ``test/bpd`` (Burda et al. 2015, arXiv 1509.00519; 5000 in the literature); 0 = off.
        predict_outputs: what ``predict`` writes per input image: ``inputs``, ``reconstructions``, ``samples``,
            ``pairs`` (input beside its reconstruction), ``interpolations`` (a strip from each input to the next one
            of the batch) and ``traversals`` (one row per latent dimension).
        latent_steps: images per interpolation strip and per traversal row.
        traversal_span: traversals sweep each dimension over ``[-span, span]``.
        evaluation: sample metrics computed by ``trainer.test`` on the test split and as many samples, e.g.
            :class:`~lit_gen.metrics.ImageQuality`; None = likelihood metrics only.
        evaluate_every_n_epochs: also compute the ``evaluation`` on the validation split every n epochs and at the
            last (``val/fd``, ...), e.g. for a sweep; 0 = at test time only.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        latent_dim: int | None = None,
        beta: float = 1.0,
        beta_schedule: BetaSchedule = "constant",
        beta_warmup_steps: int = 0,
        beta_cycle_steps: int = 0,
        beta_cycle_ratio: float = 0.5,
        capacity: float | None = None,
        capacity_steps: int = 0,
        free_bits: float = 0.0,
        iwae_samples: int = 1,
        likelihood: Likelihood = "bernoulli",
        gaussian_std: float | None = 0.1,
        optimizer: OptimizerCallable | None = None,
        lr: float | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        flush_denormal: bool = True,
        compile: bool = False,
        channels_last: bool | None = None,
        nonfinite: NonFinitePolicy = "stop",
        importance_samples: int = 64,
        predict_outputs: Sequence[PredictOutput] = ("inputs", "reconstructions", "samples"),
        latent_steps: int = 8,
        traversal_span: float = 3.0,
        evaluation: SampleEvaluation | None = None,
        evaluate_every_n_epochs: int = 0,
    ) -> None:
        super().__init__()
        save_init_hyperparameters(
            self,
            encoder=encoder,
            decoder=decoder,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            evaluation=evaluation,
        )
        check_objective(beta, beta_schedule, free_bits, iwae_samples, capacity, importance_samples)
        check_schedule(beta_schedule, beta_warmup_steps, beta_cycle_steps, beta_cycle_ratio, capacity, capacity_steps)
        k = params_per_pixel(likelihood)
        if gaussian_std is not None and gaussian_std <= 0:
            raise ValueError(f"gaussian_std must be > 0 (None = learned), got {gaussian_std}")
        unknown = [o for o in predict_outputs if o not in PREDICT_OUTPUTS]
        if unknown or not predict_outputs:
            raise ValueError(f"predict_outputs must be a non-empty list of {', '.join(PREDICT_OUTPUTS)}; got {unknown}")
        if latent_steps < 2:
            raise ValueError(f"latent_steps must be >= 2, got {latent_steps}")
        self.encoder = encoder if encoder is not None else ConvEncoder(latent_dim=latent_dim or 16)
        self.decoder = decoder if decoder is not None else ConvDecoder(latent_dim=latent_dim or 16, out_channels=k)
        self.latent_dim, self.num_classes = net_sizes(self.encoder, self.decoder, latent_dim)
        self.beta = beta
        self.beta_schedule = beta_schedule
        self.schedule_args = (beta_warmup_steps, beta_cycle_steps, beta_cycle_ratio)
        self.capacity, self.capacity_steps = capacity, capacity_steps
        self.free_bits = free_bits
        self.iwae_samples = iwae_samples
        self.likelihood = likelihood
        self.gaussian_std = gaussian_std
        # σ-VAE's learned standard deviation, one log-σ shared by all pixels
        self.log_std = nn.Parameter(torch.zeros(())) if likelihood == "gaussian" and gaussian_std is None else None
        self.init_training(optimizer, lr_scheduler, flush_denormal, nonfinite, lr)
        self.importance_samples = importance_samples
        self.predict_outputs = tuple(predict_outputs)
        self.latent_steps, self.traversal_span = latent_steps, traversal_span
        self.set_evaluation(evaluation, evaluate_every_n_epochs)
        self.test_metrics = LikelihoodMetrics()
        self._step = 0  # training batches so far: the schedules' clock, saved in checkpoints

    # -- the model ---------------------------------------------------------------------------------------------------
    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W)`` (and labels ``(B,)`` for a conditional VAE) -> ``(mu, logvar)``."""
        mu, logvar = self.encoder(x, labels) if self.num_classes else self.encoder(x)
        if mu.shape != (x.shape[0], self.latent_dim) or logvar.shape != mu.shape:
            raise ValueError(
                f"the encoder must return (mu, logvar) of shape ({x.shape[0]}, {self.latent_dim}), "
                f"got {tuple(mu.shape)} and {tuple(logvar.shape)}"
            )
        return mu, logvar

    def decoder_params(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """The decoder's raw outputs for ``z (B, latent_dim)``: ``(B, k·C, H, W)``."""
        return self.decoder(z, labels) if self.num_classes else self.decoder(z)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, latent_dim) -> (B, C, H, W)``: the mean of p(x|z), in the data's pixel range."""
        return likelihood_mean(self.decoder_params(z, labels), self.likelihood, self.pixel_range)

    def forward(self, x: Tensor, labels: Tensor | None = None, *, rng: torch.Generator | None = None) -> VAEOutput:
        """Encode, draw ``z`` with the reparameterization trick (from ``rng`` if given), decode."""
        mu, logvar = self.encode(x, labels)
        z = reparameterize(mu, logvar, rng)
        recon = self.decoder_params(z, labels)
        check_decoder_output(self.likelihood, recon, x)
        return VAEOutput(recon, mu, logvar, z)

    def _nll(self, params: Tensor, x: Tensor) -> Tensor:
        """``-log p(x|z)`` per example ``(B,)``."""
        std = self.log_std.exp() if self.log_std is not None else (self.gaussian_std or 0.1)
        return reconstruction_nll(params, x, self.likelihood, std, self.pixel_range)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``decode(mu(x))`` in eval mode: the deterministic reconstruction ``(B, C, H, W)``."""
        with eval_mode(self):
            return self.decode(self.encode(x, labels)[0], labels)

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` images ``(n, C, H, W)``: ``decode(z)`` with ``z ~ N(0, I)``, in eval mode.

        Args:
            n: number of samples.
            rng: generator of ``z``.
            labels: ``(n,)`` classes of a conditional VAE; default ``0, 1, ..., K-1, 0, ...``.
        """
        if self.num_classes and labels is None:
            labels = torch.arange(n, device=self.device) % self.num_classes
        elif not self.num_classes and labels is not None:
            raise ValueError("labels were given but the VAE is unconditional; build the nets with num_classes=K")
        with eval_mode(self):
            z = torch.randn(n, self.latent_dim, device=self.device, generator=rng)
            return self.decode(z, None if labels is None else labels.to(self.device))

    def _importance_terms(
        self, x: Tensor, labels: Tensor | None, mu: Tensor, logvar: Tensor, k: int, rng: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """``k`` posterior samples ``z (k, B, D)`` and their ``log p(x|z) (k, B)``."""
        z = reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape), rng)
        params = self.decoder_params(z.reshape(-1, self.latent_dim), None if labels is None else labels.repeat(k))
        x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])
        check_decoder_output(self.likelihood, params, x_rep)
        return z, -self._nll(params, x_rep).view(k, x.shape[0])

    @torch.no_grad()
    def log_likelihood(
        self, x: Tensor, k: int = 5000, rng: torch.Generator | None = None, labels: Tensor | None = None
    ) -> Tensor:
        """Importance-weighted estimate of ``log p(x)`` with ``k`` posterior samples: ``(B, ...) -> (B,)`` nats.

        The IWAE bound (Burda et al. 2015, arXiv 1509.00519): a lower bound that tightens towards log p(x) as k grows;
        decoded in chunks of at most 4,096 images, in eval mode.
        """
        with eval_mode(self):
            mu, logvar = self.encode(x, labels)
            per_chunk = max(1, 4096 // len(x))
            zs, log_px_z = [], []
            for start in range(0, k, per_chunk):
                z, log_p = self._importance_terms(x, labels, mu, logvar, min(per_chunk, k - start), rng)
                zs.append(z)
                log_px_z.append(log_p)
            return importance_weighted_bound(torch.cat(log_px_z), torch.cat(zs), mu, logvar)

    # -- the objective -----------------------------------------------------------------------------------------------
    def beta_at(self, step: int) -> float:
        """The KL weight of training batch ``step`` under the module's schedule."""
        return beta_at(step, self.beta, self.beta_schedule, *self.schedule_args)

    def capacity_at(self, step: int) -> float | None:
        """Burgess et al.'s KL target C (nats) at training batch ``step``; None without ``capacity``."""
        return None if self.capacity is None else capacity_at(step, self.capacity, self.capacity_steps)

    def loss_terms(
        self, x: Tensor, labels: Tensor | None = None, rng: torch.Generator | None = None, step: int | None = None
    ) -> dict[str, Tensor]:
        """Batch means, per example, in nats: ``loss`` (the training objective at training batch ``step``, default
        the module's current one), ``recon`` (-log p(x|z)), ``kl``, ``elbo``; ``iwae`` with ``iwae_samples > 1``."""
        self.check_pixel_range(x, "gaussian")
        step = self._step if step is None else step
        mu, logvar = self.encode(x, labels)
        if self.iwae_samples > 1:
            z, log_px_z = self._importance_terms(x, labels, mu, logvar, self.iwae_samples, rng)
            recon, kl = -log_px_z[0].mean(), gaussian_kl(mu, logvar).mean()
            bound = importance_weighted_bound(log_px_z, z, mu, logvar).mean()
            return {"loss": -bound, "recon": recon, "kl": kl, "elbo": -(recon + kl), "iwae": bound}
        z = reparameterize(mu, logvar, rng)
        params = self.decoder_params(z, labels)
        check_decoder_output(self.likelihood, params, x)
        recon = self._nll(params, x).mean()
        kl_dims = gaussian_kl_per_dim(mu, logvar)
        kl = kl_dims.sum(1).mean()
        kl_term = free_bits_kl(kl_dims, self.free_bits) if self.free_bits else kl
        target = self.capacity_at(step)
        if target is not None:
            kl_term = (kl_term - target).abs()
        return {"loss": recon + self.beta_at(step) * kl_term, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def _schedule_logs(self, step: int) -> dict[str, float]:
        logs = {"beta": self.beta_at(step)} if self.iwae_samples == 1 else {}
        if self.capacity is not None:
            logs["capacity"] = float(self.capacity_at(step))  # type: ignore[arg-type]
        if self.log_std is not None:
            logs["gaussian_std"] = float(self.log_std.detach().exp())
        return logs

    # -- Lightning hooks ---------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        channels_last = use_channels_last(self.hparams.channels_last, self.trainer)
        speed_up([self.encoder, self.decoder], self.hparams.compile, channels_last)

    def on_train_start(self) -> None:
        super().on_train_start()
        data_classes = getattr(self.trainer.datamodule, "num_classes", None)
        if self.num_classes and data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"the nets are conditional on {self.num_classes} classes but the data has {data_classes}: build both "
                f"nets with num_classes={data_classes}, or num_classes=0 for an unconditional VAE"
            )

    def _labels(self, batch: Any) -> Tensor | None:
        return required_labels(batch, self.num_classes, "VAE")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        terms = self.loss_terms(images_of(batch), self._labels(batch))
        step, self._step = self._step, self._step + 1
        if not loss_is_finite(self, "VAE loss", terms["loss"], self.nonfinite, batch_idx):
            return None  # Lightning skips the backward pass and the optimizer step
        if logs_this_step(self, pending_optimizer_steps=1):  # only when the loggers write: ~0.4 ms a key
            self.log("train/loss", terms["loss"], prog_bar=True)
            self.log_dict({f"train/{k}": v for k, v in (terms | self._schedule_logs(step)).items() if k != "loss"})
        return terms["loss"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[STEP_KEY] = self._step

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._step = int(checkpoint.get(STEP_KEY, checkpoint.get("global_step", 0)))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", batch_idx)

    def _evaluate(self, batch: Any, stage: str, batch_idx: int) -> None:
        x, labels, rng = images_of(batch), self._labels(batch), eval_rng(self, batch_idx)  # leaves the training RNG
        terms = self.loss_terms(x, labels, rng)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, sync_dist=True, prog_bar=stage == "val")
        if self.evaluating(stage):
            self.update_evaluation(x, self.sample(x.shape[0], rng, labels), batch)
        if stage != "test":
            return
        log_px = self.log_likelihood(x, self.importance_samples, rng, labels) if self.importance_samples else None
        rate = self.rate_distortion(x, labels, self._value_range()).rate
        self.test_metrics.update(x, self.reconstruct(x, labels), self._value_range(), log_px, rate)
        self.log_dict({f"test/{k}": m for k, m in self.test_metrics.metrics(log_px is not None).items()})

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """The ``predict_outputs`` of the batch's images (see :meth:`latent_outputs`)."""
        x, labels = images_of(batch), self._labels(batch)
        return self.latent_outputs(x, labels, self.predict_outputs, eval_rng(self, batch_idx))
