"""GANModule: alternating discriminator and generator steps under Lightning's manual optimization.

Goodfellow et al. 2014 (arXiv 1406.2661) for the game; DCGAN (Radford et al. 2015, arXiv 1511.06434) for the default
nets and Adam(lr=2e-4, betas=(0.5, 0.999)); WGAN (arXiv 1701.07875) weight clipping; WGAN-GP (arXiv 1704.00028);
R1 (arXiv 1801.04406) and lazy regularization (StyleGAN2, arXiv 1912.04958); TTUR (arXiv 1706.08500); PacGAN
(arXiv 1712.04086); DiffAugment (arXiv 2006.10738); instance noise (arXiv 1610.04490); one-sided label smoothing
(arXiv 1606.03498); projection discriminator (arXiv 1802.05637); generator EMA (arXiv 1806.04498). The losses live
in :mod:`lit_gen.losses`, the nets in :mod:`lit_gen.nets`; this module only schedules them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lit_gen.losses.gan import GANLossName, get_gan_loss
from lit_gen.losses.penalties import FP16_GRAD_SCALE, gradient_penalty, input_gradient_sq_norm
from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.modules.common import (
    eval_mode,
    eval_rng,
    images_of,
    logs_this_step,
    required_labels,
    save_init_hyperparameters,
)
from lit_gen.modules.ddp import ManualGradSync
from lit_gen.modules.ema import GeneratorEMA
from lit_gen.modules.evaluation import EvaluatesSamples, data_value_range
from lit_gen.modules.gan_checks import build_nets, check_fake, check_options
from lit_gen.modules.guards import NonFinitePolicy, check_policy, loss_is_finite, uses_fp16
from lit_gen.modules.learning_rate import refuse_lr_finder
from lit_gen.modules.output_range import warn_on_range_mismatch
from lit_gen.modules.players import player_configs
from lit_gen.modules.resume import ResumableRNG, resumed_past_an_epoch_end
from lit_gen.modules.speed import speed_up, use_channels_last
from lit_gen.modules.trainer_checks import check_manual_optimization_trainer
from lit_gen.nets.augment import diff_augment, parse_policy
from lit_gen.nets.conditioning import pack as pack_samples
from lit_gen.nets.counters import counter_state, register_counters

PENDING_KEY = "lit_gen_pending_batches"
PENDING_LABELS_KEY = "lit_gen_pending_labels"

# Lightning warns that a mid-epoch checkpoint of a manual-optimization module holds the weights after the optimizer
# step; for GANModule that is exactly the state a resumed run must continue from.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")


def dcgan_adam(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The default optimizer of both players: Adam(lr=2e-4, betas=(0.5, 0.999)) as in DCGAN."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class GANModule(EvaluatesSamples, ManualGradSync, ResumableRNG):
    """A GAN trained with ``n_critic`` discriminator steps and then one generator step on every batch.

    Args:
        generator: ``z (B, latent_dim) -> images (B, C, H, W)``; class-conditional when it has ``num_classes > 0``
            (``generator(z, labels)``). Default: DCGAN for 1×28×28.
        discriminator: ``images -> logits (B,)`` (or ``(B, 1)``), ``discriminator(x, labels)`` when conditional.
            Default: DCGAN for the generator's image shape (times ``pack`` channels).
        latent_dim: size of ``z``; read from ``generator.latent_dim`` when None.
        loss: ``minimax``, ``non_saturating``, ``wasserstein``, ``hinge`` or ``least_squares`` (all from logits).
        n_critic: discriminator steps per batch (each with fresh noise, on the same real images).
        max_generator_steps: stop training after this many generator steps (GAN iterations), exactly, also across
            resumes and with ``accumulate_grad_batches``; None = no limit. ``Trainer(max_steps=...)`` counts every
            optimizer step instead: ``n_critic + 1`` per generator step.
        gradient_penalty: weight λ of the WGAN-GP penalty (0 = off; 10 in the paper).
        r1_gamma: weight γ of the R1 penalty ``γ/2·E||∇D(x)||²`` on real images (0 = off).
        d_reg_interval: lazy regularization (StyleGAN2): the penalties are computed on every ``k``-th discriminator
            step only, with their weight multiplied by ``k`` (1 = every step).
        weight_clip: clip every discriminator weight to ``[-c, c]`` after its step (WGAN; None = off).
        generator_optimizer: ``params -> Optimizer``; default Adam(lr=2e-4, betas=(0.5, 0.999)). Two time-scale
            updates (TTUR) are separate learning rates here and in ``discriminator_optimizer``.
        discriminator_optimizer: same, for the discriminator.
        generator_scheduler: ``optimizer -> LRScheduler`` (e.g. ``LinearLR`` to 0 for linear decay); None = constant.
        discriminator_scheduler: same, for the discriminator.
        scheduler_interval: step both schedulers after every generator step (``"step"``) or at every epoch end.
        pack: PacGAN: the discriminator judges ``pack`` samples at once, stacked along the channels; build it for
            ``pack·C`` channels. Batches are trimmed to a multiple of ``pack``.
        diffaugment: DiffAugment policy, e.g. ``"color,translation,cutout"``: differentiable random augmentations
            of that policy on real and generated images before every discriminator call in training (images only).
        instance_noise: std of Gaussian noise added to every discriminator input in training (0 = off).
        instance_noise_steps: anneal ``instance_noise`` linearly to 0 over this many generator steps (0 = constant).
        label_smoothing: one-sided label smoothing ε: real targets ``1 - ε`` (minimax, non-saturating, least squares).
        ema_decay: keep an exponential moving average of the generator (decay per generator step, e.g. 0.999);
            sampling, test metrics, predict and export then use it. None = off.
        ema_warmup: EMA decay ramp, ``min(decay, (1 + t) / (ema_warmup + t))`` at update t (0 = constant decay).
        flush_denormal: ``torch.set_flush_denormal(True)`` at setup: denormal floats slow CPU training up to 3×.
        compile: ``torch.compile`` the networks (``nn.Module.compile``: checkpoints keep their keys); for long
            GPU runs, the first steps pay tens of seconds of compilation.
        channels_last: store the networks' conv weights channels-last (faster convolutions under mixed precision).
            None (automatic) = on when the Trainer computes in bf16/fp16 on a CUDA GPU or in bf16 on a CPU with
            native bf16 (AMX / AVX-512 BF16), decided at setup; True/False force it.
        accumulate_grad_batches: make one GAN iteration (``n_critic`` D steps, one G step) out of this many batches,
            equal to one iteration on a batch that many times larger for nets without batch norm (Lightning's own
            option refuses manual optimization). Gradients are all-reduced once per step under DDP; a group may span
            an epoch boundary, and an incomplete group at the end of training is not used.
        generator_clip_norm: clip the generator's gradient to this total L2 norm before each step (None = off).
        discriminator_clip_norm: same for the discriminator.
        nonfinite: a NaN/inf loss ``"stop"``s training with an error naming the loss and the step, or the step is
            ``"skip"``ped (counted in ``train/skipped_steps``).
        evaluation: sample metrics computed by ``trainer.test`` / ``lit-gen test`` on the test split and as many
            generated samples, e.g. :class:`~lit_gen.metrics.ImageQuality` (Fréchet distance, KID, precision/recall,
            class coverage) or :class:`~lit_gen.metrics.MixtureQuality` (2D modes); None = losses only.
        evaluate_every_n_epochs: also compute the ``evaluation`` on the validation split (as many samples as
            validation images, logged as ``val/<name>``, e.g. ``val/fd``) after every n-th training epoch and the last
            one, for sweeps and checkpoint selection; ``lit-gen validate`` computes it too. 0 = test time only.
    """

    def __init__(
        self,
        *,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        latent_dim: int | None = None,
        loss: GANLossName = "non_saturating",
        n_critic: int = 1,
        max_generator_steps: int | None = None,
        gradient_penalty: float = 0.0,
        r1_gamma: float = 0.0,
        d_reg_interval: int = 1,
        weight_clip: float | None = None,
        generator_optimizer: OptimizerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        generator_scheduler: LRSchedulerCallable | None = None,
        discriminator_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        pack: int = 1,
        diffaugment: str | None = None,
        instance_noise: float = 0.0,
        instance_noise_steps: int = 0,
        label_smoothing: float = 0.0,
        ema_decay: float | None = None,
        ema_warmup: int = 0,
        accumulate_grad_batches: int = 1,
        generator_clip_norm: float | None = None,
        discriminator_clip_norm: float | None = None,
        flush_denormal: bool = True,
        compile: bool = False,
        channels_last: bool | None = None,
        nonfinite: NonFinitePolicy = "stop",
        evaluation: SampleEvaluation | None = None,
        evaluate_every_n_epochs: int = 0,
    ) -> None:
        super().__init__()
        save_init_hyperparameters(
            self,
            evaluation=evaluation,
            generator=generator,
            discriminator=discriminator,
            generator_optimizer=generator_optimizer,
            discriminator_optimizer=discriminator_optimizer,
            generator_scheduler=generator_scheduler,
            discriminator_scheduler=discriminator_scheduler,
        )
        self.automatic_optimization = False
        check_options(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.losses = get_gan_loss(loss, label_smoothing)
        self.generator, self.discriminator, self.latent_dim, self.num_classes = build_nets(
            generator, discriminator, latent_dim, pack
        )
        self.generator_ema = GeneratorEMA(self.generator, ema_decay, ema_warmup) if ema_decay is not None else None

        self.n_critic = n_critic
        self.max_generator_steps = max_generator_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self._group: list[tuple[Tensor, Tensor | None]] = []  # batches waiting for the rest of their group
        self.gp_weight = gradient_penalty
        self.r1_gamma = r1_gamma
        self.d_reg_interval = d_reg_interval
        self.weight_clip = weight_clip
        self.pack = pack
        self.augment_policy = parse_policy(diffaugment or "")
        data_shape = tuple(getattr(self.generator, "image_shape", (1, 28, 28)))
        if self.augment_policy and len(data_shape) != 3:
            raise ValueError(f"diffaugment augments images (C, H, W); this generator makes {data_shape}: unset it")
        self.instance_noise = instance_noise
        self.instance_noise_steps = instance_noise_steps
        self.generator_clip_norm = generator_clip_norm
        self.discriminator_clip_norm = discriminator_clip_norm
        self.optimizer_factories = (generator_optimizer, discriminator_optimizer)
        self.scheduler_factories = (generator_scheduler, discriminator_scheduler)
        self.scheduler_interval = scheduler_interval
        self.flush_denormal = flush_denormal
        self.nonfinite = check_policy(nonfinite)
        self.set_evaluation(evaluation, evaluate_every_n_epochs)
        # Lightning's global_step counts every optimizer step (n_critic + 1 per batch): keep our own counters, out of
        # the buffers that weight averaging (EMAWeightAveraging) averages, under the same state_dict keys.
        zero = torch.zeros((), dtype=torch.long)
        register_counters(self, skipped_steps=zero, generator_steps=zero, images_seen=zero)
        self._step = 0  # generator_steps on the host: schedules read it without a device sync
        self.last_penalty: Tensor | None = None  # the weighted penalty of the last regularized D step

    # -- sampling ----------------------------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> nn.Module:
        """The generator that samples, evaluates, predicts and exports: the EMA copy when ``ema_decay`` is set."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """``G(z)`` (``G(z, labels)`` when conditional): ``(B, latent_dim) -> (B, C, H, W)``, with gradients."""
        return self.generator(z, labels) if self.num_classes else self.generator(z)

    def noise(self, n: int, rng: torch.Generator | None = None) -> Tensor:
        """``z ~ N(0, I)`` of shape ``(n, latent_dim)`` on the module's device."""
        return torch.randn(n, self.latent_dim, device=self.device, generator=rng)

    def random_labels(self, n: int, rng: torch.Generator | None = None) -> Tensor | None:
        """Uniform class labels ``(n,)`` for a conditional GAN, None for an unconditional one."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), device=self.device, generator=rng)

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` images ``(n, C, H, W)`` from the sampling generator in eval mode (the EMA copy when there is one).

        Args:
            n: number of samples.
            rng: generator of the noise.
            labels: ``(n,)`` classes for a conditional GAN; default ``0, 1, ..., K-1, 0, 1, ...`` (a grid with
                ``nrow=K`` shows one class per column).
        """
        if self.num_classes and labels is None:
            labels = torch.arange(n, device=self.device) % self.num_classes
        elif not self.num_classes and labels is not None:
            raise ValueError("labels were given but the GAN is unconditional; build the nets with num_classes=K")
        elif labels is not None and (
            labels.shape != (n,) or not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes
        ):
            raise ValueError(
                f"labels must have shape ({n},) with values in [0, {self.num_classes}), got {labels.tolist()}"
            )
        g = self.sampling_generator
        with eval_mode(g):
            z = self.noise(n, rng)
            return g(z, labels.to(self.device)) if labels is not None else g(z)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.generate(z, labels)

    # -- training ----------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        refuse_lr_finder(self, stage)
        if self.flush_denormal:
            torch.set_flush_denormal(True)
        channels_last = use_channels_last(self.hparams.channels_last, self.trainer)
        speed_up([self.generator, self.discriminator], self.hparams.compile, channels_last)

    def configure_callbacks(self) -> list[Any]:
        """No callbacks; refuses Trainer options that manual optimization cannot use, naming this module's own
        (the only hook that runs before Lightning's check, whose message names no alternative)."""
        if self.trainer.state.fn == "fit":
            check_manual_optimization_trainer(self.trainer, type(self).__name__)
        return []

    def on_fit_start(self) -> None:
        super().on_fit_start()
        data_classes = getattr(self.trainer.datamodule, "num_classes", None)
        if self.num_classes and data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"the nets are conditional on {self.num_classes} classes but the data has {data_classes}: build both "
                f"nets with num_classes={data_classes} (an image folder without class subfolders has 1 class; use "
                "num_classes=0 for an unconditional GAN)"
            )

    def on_train_start(self) -> None:
        super().on_train_start()
        self._step = int(self.generator_steps)
        if self.scheduler_interval == "epoch" and resumed_past_an_epoch_end(self.trainer):
            self._step_schedulers()  # the step of the epoch end Lightning skipped (resumed at its last batch)
        value_range = data_value_range(self)
        if self.augment_policy and value_range is None:
            warnings.warn(
                "diffaugment assumes images in [-1, 1]: the data has no `value_range` (use a lit_gen DataModule)",
                stacklevel=1,
            )
        self._value_range = value_range or (-1.0, 1.0)
        if not self.hparams.compile:  # a tanh generator on [0, 1] data: one forward pass of 2 samples, own noise
            rng = torch.Generator(self.device).manual_seed(0)
            warn_on_range_mismatch(self.generator, self.noise(2, rng), self.random_labels(2, rng), value_range)

    def configure_optimizers(self) -> Any:
        g_factory, d_factory = self.optimizer_factories
        g_opt = (g_factory or dcgan_adam)(self.generator.parameters())
        d_opt = (d_factory or dcgan_adam)(self.discriminator.parameters())
        # named lr-generator / lr-discriminator for LearningRateMonitor, with the interval they are stepped at
        return player_configs((g_opt, d_opt), self.scheduler_factories, self.scheduler_interval)

    def _budget_spent(self) -> bool:
        """True (and the trainer told to stop after this batch) once ``max_generator_steps`` generator steps ran."""
        spent = self.max_generator_steps is not None and self._step >= self.max_generator_steps
        if spent:
            self.trainer.should_stop = True
        return spent

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._budget_spent():  # a run resumed at its generator-step budget
            return
        self._group.append((images_of(batch), self._labels(batch)))
        if len(self._group) < self.accumulate_grad_batches:
            return  # gradients are accumulated over the whole group at once, below
        group = [(real.to(self.device), None if y is None else y.to(self.device)) for real, y in self._group]
        self._group = []
        g_opt, d_opt = self.optimizers()  # type: ignore[misc]
        for i in range(self.n_critic):
            d_stats = self._discriminator_step(group, d_opt, batch_idx, self._step * self.n_critic + i)
        g_loss, stepped = self._generator_step([real.shape[0] for real, _ in group], g_opt, batch_idx)
        if stepped and self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
        if self.scheduler_interval == "step":
            self._step_schedulers()
        self._step += 1
        self.generator_steps += 1
        self._budget_spent()
        self.images_seen += sum(real.shape[0] for real, _ in group) * self.trainer.world_size
        if logs_this_step(self):  # only when the loggers write: each self.log key costs ~0.4 ms
            self.log_dict({"train/d_loss": d_stats[0], "train/g_loss": g_loss}, prog_bar=True)
            self.log_dict({"train/d_real": d_stats[1], "train/d_fake": d_stats[2]})
            counters = {"generator_steps": self.generator_steps, "images_seen": self.images_seen}
            counters["skipped_steps"] = self.skipped_steps
            self.log_dict({f"train/{k}": v.float() for k, v in counters.items()})

    def _labels(self, batch: Any) -> Tensor | None:
        return required_labels(batch, self.num_classes, "GAN")

    def _discriminator_step(
        self, group: list[tuple[Tensor, Tensor | None]], opt: Any, batch_idx: int, d_index: int
    ) -> Tensor:
        """One discriminator step on a group of real batches; returns (loss, mean real logit, mean fake logit)."""
        stats = []
        reg = self.d_reg_interval if d_index % self.d_reg_interval == 0 else 0  # lazy regularization
        with self.toggled_optimizer(opt):
            opt.zero_grad(set_to_none=True)
            for real, labels in group:
                loss, real_mean, fake_mean = self._discriminator_loss(real, labels, reg)
                share = real.shape[0] / sum(r.shape[0] for r, _ in group)  # batch means weighted by size
                if not self._backward(opt, loss * share, "discriminator loss", batch_idx):
                    break
                stats.append(torch.stack([loss.detach(), real_mean, fake_mean]))
            else:
                self._sync_and_step(opt)
        if self.weight_clip is not None:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.weight_clip, self.weight_clip)
        return torch.stack(stats).mean(0) if stats else torch.full((3,), float("nan"), device=self.device)

    def _discriminator_loss(self, real: Tensor, labels: Tensor | None, reg: int) -> tuple[Tensor, Tensor, Tensor]:
        """D's loss on real images and as many fakes (for the same labels when conditional), penalties weighted
        by ``reg`` (the lazy-regularization factor; 0 on steps without them)."""
        with torch.no_grad():  # no graph through G: it is not trained here
            fake = self.generate(self.noise(real.shape[0]), labels)
        check_fake(fake, real)
        r1 = bool(self.r1_gamma and reg)
        if r1:
            real = real.detach().requires_grad_(True)
        real_in, fake_in = self._d_input(real), self._d_input(fake)
        real_logits = self._discriminate(real_in, labels)
        fake_logits = self._discriminate(fake_in, labels)
        loss = self.losses.discriminator(real_logits, fake_logits)
        penalty = None
        if self.gp_weight and reg:

            def critic(x: Tensor) -> Tensor:
                return self._discriminate(x, labels)

            penalty = reg * self.gp_weight * gradient_penalty(critic, real_in, fake_in, scale=self._grad_scale())
        if r1:
            # E over discriminator inputs (packs of `pack` images) of ||∇_x D||², differentiated w.r.t. the
            # un-augmented reals as StyleGAN2-ADA does
            sq_norm = input_gradient_sq_norm(real_logits, real, scale=self._grad_scale()).sum() / real_logits.numel()
            r1_term = reg * 0.5 * self.r1_gamma * sq_norm
            penalty = r1_term if penalty is None else penalty + r1_term
        if penalty is not None:
            loss = loss + penalty
            self.last_penalty = penalty.detach()
        return loss, real_logits.detach().mean(), fake_logits.detach().mean()

    def _generator_step(self, sizes: list[int], opt: Any, batch_idx: int) -> tuple[Tensor, bool]:
        """One generator step, its gradient accumulated over ``len(sizes)`` noise batches; (loss, stepped)."""
        losses = []
        with self.toggled_optimizer(opt):  # D's parameters are frozen: no gradients are computed for them
            opt.zero_grad(set_to_none=True)
            for n in sizes:
                labels = self.random_labels(n)
                logits = self._discriminate(self._d_input(self.generate(self.noise(n), labels)), labels)
                loss = self.losses.generator(logits)
                if not self._backward(opt, loss * (n / sum(sizes)), "generator loss", batch_idx):
                    break
                losses.append(loss.detach())
            else:
                self._sync_and_step(opt)
        if len(losses) < len(sizes):
            return torch.tensor(float("nan"), device=self.device), False
        return torch.stack(losses).mean(), True

    def _d_input(self, x: Tensor) -> Tensor:
        """What the discriminator sees in training: DiffAugment, then instance noise, then packing."""
        if self.augment_policy:
            x = diff_augment(x, self.augment_policy, value_range=getattr(self, "_value_range", (-1.0, 1.0)))
        std = self.instance_noise_std()
        if std > 0:
            x = x + std * torch.randn_like(x)
        return pack_samples(x, self.pack)

    def instance_noise_std(self) -> float:
        """The instance noise std at the current generator step (annealed linearly when ``instance_noise_steps``)."""
        if not self.instance_noise_steps:
            return self.instance_noise
        return self.instance_noise * max(0.0, 1.0 - self._step / self.instance_noise_steps)

    def _backward(self, opt: Any, loss: Tensor, name: str, batch_idx: int) -> bool:
        """Backward of one (micro-)batch; False, with the step abandoned, for a non-finite loss under ``skip``."""
        if not loss_is_finite(self, name, loss, self.nonfinite, batch_idx):
            opt.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return False
        self.manual_backward(loss)
        return True

    def _sync_and_step(self, opt: Any) -> None:
        """Average the accumulated gradients across processes (once per step, not per micro-batch) and step."""
        self.sync_gradients(opt)
        opt.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[PENDING_KEY] = [real.detach().cpu() for real, _ in self._group]  # exact resume mid-group
        checkpoint[PENDING_LABELS_KEY] = [None if y is None else y.cpu() for _, y in self._group]
        # a WeightAveraging callback puts its averaged copy's state_dict here: its counters stopped at the copy
        checkpoint["state_dict"].update(counter_state(self))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        images = checkpoint.get(PENDING_KEY, [])
        self._group = list(zip(images, checkpoint.get(PENDING_LABELS_KEY, [None] * len(images)), strict=True))

    def _grad_scale(self) -> float:
        """The penalties' inner-gradient scale: a fixed ``FP16_GRAD_SCALE`` under fp16 (never the GradScaler's 2^16,
        which is ``inf`` in fp16), else 1; the penalties differentiate the scaled output, then unscale."""
        return FP16_GRAD_SCALE if uses_fp16(self.trainer) else 1.0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip by norm here: Lightning calls this after unscaling the gradients under 16-mixed."""
        g_opt, d_opt = self.trainer.optimizers
        clip = {id(g_opt): self.generator_clip_norm, id(d_opt): self.discriminator_clip_norm}.get(id(optimizer))
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()

    def on_train_epoch_end(self) -> None:
        if self.scheduler_interval == "epoch":
            self._step_schedulers()
        self.sync_buffers()

    # -- evaluation --------------------------------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", batch_idx)

    def _evaluate(self, batch: Any, stage: str, batch_idx: int) -> None:
        real, labels = images_of(batch), self._labels(batch)
        # Evaluation noise comes from its own generator, seeded by the batch index: metrics are reproducible and
        # evaluation never moves the training RNG (which exact resume depends on).
        z = self.noise(real.shape[0], eval_rng(self, batch_idx))
        fake = self.generate(z, labels)  # the trained generator: the losses describe the game itself
        check_fake(fake, real)
        if real.shape[0] >= self.pack:  # a last batch smaller than `pack` has no complete pack for D
            real_logits = self._discriminate(pack_samples(real, self.pack), labels)
            fake_logits = self._discriminate(pack_samples(fake, self.pack), labels)
            metrics = {
                "d_loss": self.losses.discriminator(real_logits, fake_logits),
                "g_loss": self.losses.generator(fake_logits),
                "d_real": real_logits.mean(),
                "d_fake": fake_logits.mean(),
            }
            self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, sync_dist=True, prog_bar=stage == "val")
        if self.evaluating(stage):
            if self.generator_ema is not None:  # sample metrics score the generator users sample from
                fake = self.generator_ema(z, labels) if self.num_classes else self.generator_ema(z)
            self.update_evaluation(real, fake, batch)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """As many samples as the batch holds images: ``{"samples": (B, C, H, W)}``, noise seeded by ``batch_idx``;
        a conditional GAN samples the batch's labels."""
        n = images_of(batch).shape[0]
        return {"samples": self.sample(n, eval_rng(self, batch_idx), labels=self._labels(batch))}

    # -- checks ------------------------------------------------------------------------------------------------------
    def _discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """D's logits ``(B,)`` for discriminator inputs ``x`` (already packed)."""
        logits = self.discriminator(x, labels) if self.num_classes else self.discriminator(x)
        if logits.numel() != x.shape[0]:
            raise ValueError(
                f"the discriminator returned shape {tuple(logits.shape)} for {x.shape[0]} inputs; it must return one "
                "logit per input, shape (B,) or (B, 1)"
            )
        return logits.reshape(-1)
