"""GANModule: alternating discriminator and generator steps under Lightning's manual optimization.

Goodfellow et al. 2014 (arXiv 1406.2661) for the game; DCGAN (Radford et al. 2015, arXiv 1511.06434) for the default
nets and Adam(lr=2e-4, betas=(0.5, 0.999)); WGAN (arXiv 1701.07875) weight clipping; WGAN-GP (arXiv 1704.00028);
R1 (arXiv 1801.04406). The losses live in :mod:`lit_gen.losses`; this module only schedules them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lit_gen.losses.gan import GANLossName, get_gan_loss
from lit_gen.losses.penalties import gradient_penalty, r1_penalty
from lit_gen.metrics.evaluation import SampleEvaluation
from lit_gen.modules.common import eval_mode, eval_rng, images_of, object_args_to_ignore, shape_text
from lit_gen.modules.ddp import ManualGradSync
from lit_gen.modules.evaluation import EvaluatesSamples
from lit_gen.modules.guards import NonFinitePolicy, check_policy, loss_is_finite
from lit_gen.modules.resume import ResumableRNG
from lit_gen.nets.dcgan import DCGANDiscriminator, DCGANGenerator

PENDING_KEY = "lit_gen_pending_batches"

# Lightning warns that a mid-epoch checkpoint of a manual-optimization module holds the weights after the optimizer
# step; for GANModule that is exactly the state a resumed run must continue from.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")


def dcgan_adam(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The default optimizer of both players: Adam(lr=2e-4, betas=(0.5, 0.999)) as in DCGAN."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class GANModule(EvaluatesSamples, ManualGradSync, ResumableRNG):
    """A GAN trained with ``n_critic`` discriminator steps and then one generator step on every batch.

    Args:
        generator: ``z (B, latent_dim) -> images (B, C, H, W)``. Default: DCGAN for 1×28×28.
        discriminator: ``images -> logits (B,)`` (or ``(B, 1)``). Default: DCGAN for the generator's image shape.
        latent_dim: size of ``z``; read from ``generator.latent_dim`` when None.
        loss: ``minimax``, ``non_saturating``, ``wasserstein``, ``hinge`` or ``least_squares`` (all from logits).
        n_critic: discriminator steps per batch (each with fresh noise, on the same real images).
        gradient_penalty: weight λ of the WGAN-GP penalty (0 = off; 10 in the paper).
        r1_gamma: weight γ of the R1 penalty ``γ/2·E||∇D(x)||²`` on real images (0 = off).
        weight_clip: clip every discriminator weight to ``[-c, c]`` after its step (WGAN; None = off).
        generator_optimizer: ``params -> Optimizer``; default Adam(lr=2e-4, betas=(0.5, 0.999)).
        discriminator_optimizer: same, for the discriminator.
        generator_scheduler: ``optimizer -> LRScheduler``, stepped once per epoch; None = constant.
        discriminator_scheduler: same, for the discriminator.
        flush_denormal: ``torch.set_flush_denormal(True)`` at setup: denormal floats slow CPU training up to 3×.
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
    """

    def __init__(
        self,
        *,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        latent_dim: int | None = None,
        loss: GANLossName = "non_saturating",
        n_critic: int = 1,
        gradient_penalty: float = 0.0,
        r1_gamma: float = 0.0,
        weight_clip: float | None = None,
        generator_optimizer: OptimizerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        generator_scheduler: LRSchedulerCallable | None = None,
        discriminator_scheduler: LRSchedulerCallable | None = None,
        accumulate_grad_batches: int = 1,
        generator_clip_norm: float | None = None,
        discriminator_clip_norm: float | None = None,
        flush_denormal: bool = True,
        nonfinite: NonFinitePolicy = "stop",
        evaluation: SampleEvaluation | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=object_args_to_ignore(
                evaluation=evaluation,
                generator=generator,
                discriminator=discriminator,
                generator_optimizer=generator_optimizer,
                discriminator_optimizer=discriminator_optimizer,
                generator_scheduler=generator_scheduler,
                discriminator_scheduler=discriminator_scheduler,
            )
        )
        self.automatic_optimization = False
        self.losses = get_gan_loss(loss)
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        if gradient_penalty < 0 or r1_gamma < 0:
            raise ValueError(f"gradient_penalty and r1_gamma must be >= 0, got {gradient_penalty} and {r1_gamma}")
        for name, value in (("weight_clip", weight_clip), ("generator_clip_norm", generator_clip_norm),
                            ("discriminator_clip_norm", discriminator_clip_norm)):  # fmt: skip
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        if loss == "wasserstein" and not (weight_clip or gradient_penalty):
            warnings.warn(
                "loss='wasserstein' without weight_clip or gradient_penalty has no Lipschitz constraint and diverges; "
                "set gradient_penalty=10 (WGAN-GP) or weight_clip=0.01 (WGAN)",
                stacklevel=2,
            )

        self.generator = generator if generator is not None else DCGANGenerator(latent_dim=latent_dim or 64)
        g_latent = getattr(self.generator, "latent_dim", None)
        if latent_dim is not None and g_latent is not None and latent_dim != g_latent:
            raise ValueError(
                f"latent_dim={latent_dim} but the generator takes z of size {g_latent}; set them equal "
                f"(or leave latent_dim unset to use the generator's)"
            )
        if latent_dim is None and g_latent is None:
            raise ValueError("pass latent_dim: the generator has no `latent_dim` attribute to read it from")
        self.latent_dim = int(latent_dim or g_latent)  # type: ignore[arg-type]
        image_shape = getattr(self.generator, "image_shape", (1, 28, 28))
        self.discriminator = discriminator if discriminator is not None else DCGANDiscriminator(image_shape)

        self.n_critic = n_critic
        self.accumulate_grad_batches = accumulate_grad_batches
        self._group: list[Tensor] = []  # real batches waiting for the rest of their accumulation group
        self.gp_weight = gradient_penalty
        self.r1_gamma = r1_gamma
        self.weight_clip = weight_clip
        self.generator_clip_norm = generator_clip_norm
        self.discriminator_clip_norm = discriminator_clip_norm
        self.optimizer_factories = (generator_optimizer, discriminator_optimizer)
        self.scheduler_factories = (generator_scheduler, discriminator_scheduler)
        self.flush_denormal = flush_denormal
        self.nonfinite = check_policy(nonfinite)
        self.set_evaluation(evaluation)
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        # Lightning's global_step counts every optimizer step (n_critic + 1 per batch): keep our own counters.
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))

    # -- sampling ----------------------------------------------------------------------------------------------------
    def generate(self, z: Tensor) -> Tensor:
        """``G(z)``: ``(B, latent_dim) -> (B, C, H, W)``, in the generator's current mode, with gradients."""
        return self.generator(z)

    def noise(self, n: int, rng: torch.Generator | None = None) -> Tensor:
        """``z ~ N(0, I)`` of shape ``(n, latent_dim)`` on the module's device."""
        return torch.randn(n, self.latent_dim, device=self.device, generator=rng)

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None) -> Tensor:
        """``n`` images ``(n, C, H, W)`` from the generator in eval mode (batch-norm running statistics)."""
        with eval_mode(self.generator):
            return self.generator(self.noise(n, rng))

    def forward(self, z: Tensor) -> Tensor:
        return self.generate(z)

    # -- training ----------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.flush_denormal:
            torch.set_flush_denormal(True)

    def configure_optimizers(self) -> Any:
        g_factory, d_factory = self.optimizer_factories
        g_opt = (g_factory or dcgan_adam)(self.generator.parameters())
        d_opt = (d_factory or dcgan_adam)(self.discriminator.parameters())
        configs: list[dict[str, Any]] = []
        for opt, sched in zip((g_opt, d_opt), self.scheduler_factories, strict=True):
            configs.append({"optimizer": opt} | ({"lr_scheduler": sched(opt)} if sched is not None else {}))
        return configs

    def training_step(self, batch: Any, batch_idx: int) -> None:
        self._group.append(images_of(batch))
        if len(self._group) < self.accumulate_grad_batches:
            return  # gradients are accumulated over the whole group at once, below
        group, self._group = [real.to(self.device) for real in self._group], []
        g_opt, d_opt = self.optimizers()  # type: ignore[misc]
        for _ in range(self.n_critic):
            d_stats = self._discriminator_step(group, d_opt, batch_idx)
        g_loss = self._generator_step([real.shape[0] for real in group], g_opt, batch_idx)
        self.generator_steps += 1
        self.images_seen += sum(real.shape[0] for real in group) * self.trainer.world_size
        self.log_dict({"train/d_loss": d_stats[0], "train/g_loss": g_loss}, prog_bar=True)
        self.log_dict({"train/d_real": d_stats[1], "train/d_fake": d_stats[2]})
        counters = {"generator_steps": self.generator_steps, "images_seen": self.images_seen}
        counters["skipped_steps"] = self.skipped_steps
        self.log_dict({f"train/{k}": v.float() for k, v in counters.items()})

    def _discriminator_step(self, group: list[Tensor], opt: Any, batch_idx: int) -> Tensor:
        """One discriminator step on a group of real batches; returns (loss, mean real logit, mean fake logit)."""
        stats = []
        with self.toggled_optimizer(opt):
            opt.zero_grad(set_to_none=True)
            for real in group:
                loss, real_mean, fake_mean = self._discriminator_loss(real)
                share = real.shape[0] / sum(r.shape[0] for r in group)  # batch means weighted by size
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

    def _discriminator_loss(self, real: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():  # no graph through G: it is not trained here
            fake = self.generator(self.noise(real.shape[0]))
        self._check_fake(fake, real)
        if self.r1_gamma:
            real = real.detach().requires_grad_(True)
        real_logits = self._discriminate(real)
        fake_logits = self._discriminate(fake)
        loss = self.losses.discriminator(real_logits, fake_logits)
        if self.gp_weight:
            loss = loss + self.gp_weight * gradient_penalty(self.discriminator, real, fake, scale=self._grad_scale())
        if self.r1_gamma:
            loss = loss + 0.5 * self.r1_gamma * r1_penalty(real_logits, real, scale=self._grad_scale())
        return loss, real_logits.detach().mean(), fake_logits.detach().mean()

    def _generator_step(self, sizes: list[int], opt: Any, batch_idx: int) -> Tensor:
        """One generator step, its gradient accumulated over ``len(sizes)`` noise batches."""
        losses = []
        with self.toggled_optimizer(opt):  # D's parameters are frozen: no gradients are computed for them
            opt.zero_grad(set_to_none=True)
            for n in sizes:
                loss = self.losses.generator(self._discriminate(self.generator(self.noise(n))))
                if not self._backward(opt, loss * (n / sum(sizes)), "generator loss", batch_idx):
                    break
                losses.append(loss.detach())
            else:
                self._sync_and_step(opt)
        return torch.stack(losses).mean() if losses else torch.tensor(float("nan"), device=self.device)

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
        checkpoint[PENDING_KEY] = [real.detach().cpu() for real in self._group]  # exact resume mid-group

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._group = list(checkpoint.get(PENDING_KEY, []))

    def _grad_scale(self) -> float:
        """The fp16 GradScaler's scale (16-mixed), else 1: penalties differentiate the scaled output, then unscale."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip by norm here: Lightning calls this after unscaling the gradients under 16-mixed."""
        g_opt, d_opt = self.trainer.optimizers
        clip = {id(g_opt): self.generator_clip_norm, id(d_opt): self.discriminator_clip_norm}.get(id(optimizer))
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()
        self.sync_buffers()

    # -- evaluation --------------------------------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", batch_idx)

    def _evaluate(self, batch: Any, stage: str, batch_idx: int) -> None:
        real = images_of(batch)
        # Evaluation noise comes from its own generator, seeded by the batch index: metrics are reproducible and
        # evaluation never moves the training RNG (which exact resume depends on).
        fake = self.generator(self.noise(real.shape[0], eval_rng(self, batch_idx)))
        self._check_fake(fake, real)
        real_logits, fake_logits = self._discriminate(real), self._discriminate(fake)
        metrics = {
            "d_loss": self.losses.discriminator(real_logits, fake_logits),
            "g_loss": self.losses.generator(fake_logits),
            "d_real": real_logits.mean(),
            "d_fake": fake_logits.mean(),
        }
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, sync_dist=True, prog_bar=stage == "val")
        if stage == "test":
            self.update_evaluation(real, fake, batch)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """As many samples as the batch holds images: ``{"samples": (B, C, H, W)}``, noise seeded by ``batch_idx``."""
        return {"samples": self.sample(images_of(batch).shape[0], eval_rng(self, batch_idx))}

    # -- checks ------------------------------------------------------------------------------------------------------
    def _discriminate(self, x: Tensor) -> Tensor:
        logits = self.discriminator(x)
        if logits.numel() != x.shape[0]:
            raise ValueError(
                f"the discriminator returned shape {tuple(logits.shape)} for {x.shape[0]} images; it must return one "
                "logit per image, shape (B,) or (B, 1)"
            )
        return logits.reshape(-1)

    @staticmethod
    def _check_fake(fake: Tensor, real: Tensor) -> None:
        if fake.shape[1:] != real.shape[1:]:
            raise ValueError(
                f"the generator makes {shape_text(fake.shape[1:])} images "
                f"but the data is {shape_text(real.shape[1:])}: "
                f"build the nets for the data (image_shape: {list(real.shape[1:])}) or resize the data "
                "(--data.image_size)"
            )
