"""VQVAEModule: the VQ-VAE (van den Oord et al. 2017, arXiv 1711.00937) under Lightning's automatic optimization,
with lossy compression to byte strings whose length is the rate.

Per example: ``loss = recon + ||sg(z_e) - e||² + β·||z_e - sg(e)||²`` (the codebook term only when the codebook is
learned by gradient; with ``VectorQuantizer(ema=True)`` it follows moving averages instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from lit_gen.compression import (
    FIXED,
    FREQUENCY,
    Method,
    code_probabilities,
    decode_codes,
    encode_codes,
    information_bits,
    read_header,
)
from lit_gen.losses.vae import likelihood_mean, params_per_pixel, reconstruction_nll
from lit_gen.losses.vq import codebook_loss, commitment_loss, perplexity, squared_error
from lit_gen.metrics.likelihood import LikelihoodMetrics
from lit_gen.modules.autoencoder import AutoencoderModule
from lit_gen.modules.common import eval_mode, images_of, logs_this_step, save_init_hyperparameters, shape_text
from lit_gen.modules.guards import NonFinitePolicy, loss_is_finite
from lit_gen.modules.speed import speed_up, use_channels_last
from lit_gen.nets.vq import Quantized, VectorQuantizer
from lit_gen.nets.vq_conv import VQDecoder, VQEncoder

Reconstruction = Literal["mse", "bernoulli", "gaussian", "discretized_logistic"]


class VQVAEOutput(NamedTuple):
    """What :meth:`VQVAEModule.forward` returns.

    Attributes:
        recon: decoder outputs ``(B, C, H, W)``: means (``mse``, ``gaussian``) or logits (``bernoulli``).
        z_e: encoder outputs ``(B, D, *grid)``.
        quantized: the quantizer's :class:`~lit_gen.nets.vq.Quantized` (codes ``(B, *grid)``, codewords, counts).
    """

    recon: Tensor
    z_e: Tensor
    quantized: Quantized


class VQVAEModule(AutoencoderModule):
    """A VQ-VAE: encoder -> nearest-code quantizer (straight-through) -> decoder, and a codec of its integer codes.

    Args:
        encoder: ``x (B, C, H, W) -> z_e (B, D, *grid)``. Default: :class:`~lit_gen.nets.VQEncoder` for 1×28×28.
        decoder: ``(B, D, *grid) -> (B, C, H, W)`` means or logits. Default: :class:`~lit_gen.nets.VQDecoder`.
        quantizer: a :class:`~lit_gen.nets.VectorQuantizer` with ``code_dim = D``. Default: 128 codes of 16 dims, EMA.
        likelihood: the reconstruction term per example: ``"mse"`` (squared error summed over pixels), or the
            negative log-likelihood in nats of ``"bernoulli"`` (pixels in [0, 1]), ``"gaussian"`` (fixed
            ``gaussian_std``) or ``"discretized_logistic"`` (8-bit pixels; the decoder outputs 2·C channels).
        gaussian_std: standard deviation of the Gaussian likelihood.
        commitment: β, the weight of the commitment loss (0.25 in the paper).
        optimizer: ``params -> Optimizer``; default Adam(lr=1e-3).
        lr: learning rate of all parameter groups, overriding ``optimizer``'s (None = its own); Lightning's
            learning-rate finder (``Tuner(trainer).lr_find``, the ``LearningRateFinder`` callback) sets it.
        lr_scheduler: ``optimizer -> LRScheduler`` stepped every epoch; None = constant.
        flush_denormal: ``torch.set_flush_denormal(True)`` at setup (denormals slow CPU training).
        channels_last: store the encoder's and decoder's conv weights channels-last (faster convolutions under mixed
            precision). None (automatic) = on when the Trainer computes in bf16/fp16 on a CUDA GPU or in bf16 on a CPU
            with native bf16 (AMX / AVX-512 BF16), decided at setup; True/False force it.
        nonfinite: a NaN/inf loss ``"stop"``s training with an error naming the step, or the batch is ``"skip"``ped.
        recount_codes: count the codes of the training split (eval mode) at the start of every validation (and of a
            test when none were counted yet): the frequencies of the entropy coder, stored in checkpoints (at each
            grid position when the encoder has a ``grid`` attribute, as :class:`~lit_gen.nets.VQEncoder` does).
    """

    def __init__(
        self,
        *,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        quantizer: VectorQuantizer | None = None,
        likelihood: Reconstruction = "mse",
        gaussian_std: float = 0.1,
        commitment: float = 0.25,
        optimizer: OptimizerCallable | None = None,
        lr: float | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        flush_denormal: bool = True,
        channels_last: bool | None = None,
        nonfinite: NonFinitePolicy = "stop",
        recount_codes: bool = True,
    ) -> None:
        super().__init__()
        save_init_hyperparameters(
            self, encoder=encoder, decoder=decoder, quantizer=quantizer, optimizer=optimizer, lr_scheduler=lr_scheduler
        )
        if likelihood != "mse":
            params_per_pixel(likelihood)  # names the choices when unknown
        if commitment < 0:
            raise ValueError(f"commitment must be >= 0, got {commitment}")
        if gaussian_std <= 0:
            raise ValueError(f"gaussian_std must be > 0, got {gaussian_std}")
        self.encoder = encoder if encoder is not None else VQEncoder(code_dim=16)
        self.decoder = decoder if decoder is not None else VQDecoder(code_dim=16)
        self.quantizer = quantizer if quantizer is not None else VectorQuantizer(num_codes=128, code_dim=16)
        dims = {
            getattr(self.encoder, "code_dim", None),
            self.quantizer.code_dim,
            getattr(self.decoder, "code_dim", None),
        }
        dims.discard(None)
        if len(dims) > 1:
            raise ValueError(f"code sizes disagree: the encoder, quantizer and decoder give code_dim {sorted(dims)}")
        grids = getattr(self.encoder, "grid", None), getattr(self.decoder, "grid", None)
        if None not in grids and grids[0] != grids[1]:
            raise ValueError(
                f"the encoder makes a {shape_text(grids[0])} grid of codes but the decoder takes "
                f"{shape_text(grids[1])}: build both for the same image_shape and downsample"
            )
        self.likelihood, self.gaussian_std, self.commitment = likelihood, gaussian_std, commitment
        self.init_training(optimizer, lr_scheduler, flush_denormal, nonfinite, lr)
        self.recount_codes = recount_codes
        # code frequencies of the training split, per grid position when the encoder declares its grid
        grid = tuple(getattr(self.encoder, "grid", ()))
        self.register_buffer("code_counts", torch.zeros(*grid, self.num_codes, dtype=torch.long))
        self.test_metrics = LikelihoodMetrics()
        self.bit_metrics = nn.ModuleDict(
            {k: MeanMetric() for k in ("bits_per_image", "bits_fixed", "bits_information")}
        )
        self._epoch_counts: Tensor | None = None

    @property
    def num_codes(self) -> int:
        """The codebook size ``K``."""
        return self.quantizer.num_codes

    def setup(self, stage: str) -> None:
        super().setup(stage)
        channels_last = use_channels_last(self.hparams.channels_last, self.trainer)
        speed_up([self.encoder, self.decoder], False, channels_last)

    # -- the model ---------------------------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> z_e (B, D, *grid)``."""
        return self.encoder(x)

    def quantize(self, z_e: Tensor) -> Quantized:
        """Nearest codes of ``z_e``; in training mode the quantizer also updates its codebook."""
        return self.quantizer(z_e)

    def decode(self, z_q: Tensor) -> Tensor:
        """``(B, D, *grid) -> (B, C, H, W)``: the mean of p(x|z_q), in the data's pixel range."""
        params = self.decoder(z_q)
        return params if self.likelihood == "mse" else likelihood_mean(params, self.likelihood, self.pixel_range)

    def forward(self, x: Tensor) -> VQVAEOutput:
        """Encode, quantize (straight-through), decode."""
        z_e = self.encode(x)
        quantized = self.quantize(z_e)
        recon = self.decoder(quantized.quantized)
        channels = x.shape[1] * (1 if self.likelihood == "mse" else params_per_pixel(self.likelihood))
        if recon.shape != (x.shape[0], channels, *x.shape[2:]):
            raise ValueError(
                f"the decoder makes {shape_text(recon.shape[1:])} images but the data is {shape_text(x.shape[1:])}: "
                f"build the nets for the data (image_shape: {list(x.shape[1:])}) or resize the data with the "
                f"DataModule's image_size (--data.image_size=SIZE); the {self.likelihood} likelihood needs {channels} "
                "output channels"
            )
        return VQVAEOutput(recon, z_e, quantized)

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, *grid)`` int64 codes, in eval mode."""
        with eval_mode(self):
            return self.quantize(self.encode(x)).codes

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """``(B, *grid)`` int64 codes -> images ``(B, C, H, W)``, in eval mode."""
        with eval_mode(self):
            return self.decode(self.quantizer.lookup(codes.to(self.device)))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """``decode(quantize(encode(x)))`` in eval mode, equal to ``decompress(compress(x))`` bit for bit."""
        with eval_mode(self):
            return self.decode(self.quantize(self.encode(x)).quantized)

    # -- compression -------------------------------------------------------------------------------------------------
    @property
    def default_method(self) -> Method:
        """``"position"`` when the codes are counted per grid position, else ``"frequency"``."""
        return "position" if self.code_counts.dim() > 1 else "frequency"

    def code_probabilities(self, method: Method | None = None) -> Any:
        """The entropy coder's model, float64 numpy probabilities of :attr:`code_counts`, add-one smoothed: ``(K,)``
        for ``"frequency"``, ``(*grid, K)`` for ``"position"`` (default: :attr:`default_method`)."""
        if int(self.code_counts.sum()) == 0:
            raise ValueError(
                "no code frequencies yet: count them with module.count_codes(train_batches) (lit-gen fit does it at "
                "every validation), or compress with method='fixed'"
            )
        method = method or self.default_method
        if method == "position" and self.code_counts.dim() == 1:
            raise ValueError(
                "method 'position' needs code counts per grid position: give the encoder a `grid` attribute "
                "(VQEncoder has one), or use method 'frequency'"
            )
        counts = self.code_counts if method == "position" else self.code_counts.reshape(-1, self.num_codes).sum(0)
        return code_probabilities(counts)

    def compress(self, x: Tensor, method: Method | None = None, batched: bool = False) -> list[bytes]:
        """Images ``(B, C, H, W)`` -> one self-describing byte string per image; its length is the rate.

        Args:
            x: images in the data's pixel range.
            method: range-coded under the training split's code frequencies at each grid position (``"position"``)
                or over the whole grid (``"frequency"``), or ``"fixed"`` (``ceil(log2 K)`` bits per code). Default:
                :attr:`default_method`.
            batched: one byte string for the whole batch instead (one header, one coder flush).
        """
        method = method or self.default_method
        probabilities = None if method == "fixed" else self.code_probabilities(method)
        codes = self.codes(x).cpu()
        if batched:
            return [encode_codes(codes, self.num_codes, method, probabilities, batched=True)]
        return [encode_codes(c, self.num_codes, method, probabilities) for c in codes]

    def decompress(self, data: Sequence[bytes]) -> Tensor:
        """Byte strings of :meth:`compress` -> reconstructions ``(N, C, H, W)``, decoded as one batch."""
        codes = []
        for d in data:
            method = read_header(d)[0].method
            name: Method = {FIXED: "fixed", FREQUENCY: "frequency"}.get(method, "position")  # type: ignore[assignment]
            probabilities = None if name == "fixed" else self.code_probabilities(name)
            codes.append(decode_codes(d, self.num_codes, probabilities))
        return self.decode_codes(torch.cat(codes))

    @torch.no_grad()
    def count_codes(self, batches: Iterable[Any]) -> Tensor:
        """Count the codes of ``batches`` (images or ``(images, labels)`` on this device, in the data's pixel
        range) into :attr:`code_counts`, replacing the old counts. Returns the counts, ``(*grid, K)`` or ``(K,)``."""
        counts = torch.zeros_like(self.code_counts)
        for batch in batches:
            codes = self.codes(images_of(batch))
            if counts.dim() == 1:
                counts += torch.bincount(codes.flatten(), minlength=self.num_codes)
                continue
            if codes.shape[1:] != counts.shape[:-1]:
                raise ValueError(
                    f"the codes form a {shape_text(codes.shape[1:])} grid but the encoder declares "
                    f"{shape_text(counts.shape[:-1])}: fix the encoder's `grid`"
                )
            cells = torch.arange(codes[0].numel(), device=codes.device) * self.num_codes
            flat = (codes.flatten(1) + cells).flatten()
            counts += torch.bincount(flat, minlength=counts.numel()).view(counts.shape)
        self.code_counts.copy_(counts)
        return counts

    # -- the objective -----------------------------------------------------------------------------------------------
    def loss_terms(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Batch means per example: ``loss``, ``recon``, ``commitment`` (and ``codebook``); and the code counts."""
        self.check_pixel_range(x, "mse")
        out = self(x)
        if self.likelihood == "mse":
            recon = squared_error(out.recon, x).mean()
        else:
            nll = reconstruction_nll(out.recon, x, self.likelihood, self.gaussian_std, self.pixel_range)
            recon = nll.mean()
        commit = commitment_loss(out.z_e, out.quantized.codewords).mean()
        terms = {"recon": recon, "commitment": commit}
        loss = recon + self.commitment * commit
        if not self.quantizer.ema:
            terms["codebook"] = codebook_loss(out.z_e, out.quantized.codewords).mean()
            loss = loss + terms["codebook"]
        return {"loss": loss, **terms}, out.quantized.counts

    # -- Lightning hooks ---------------------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        terms, counts = self.loss_terms(images_of(batch))
        if not loss_is_finite(self, "VQ-VAE loss", terms["loss"], self.nonfinite, batch_idx):
            return None  # Lightning skips the backward pass and the optimizer step
        if logs_this_step(self, pending_optimizer_steps=1):  # only when the loggers write: ~0.4 ms a key
            self.log("train/loss", terms["loss"], prog_bar=True)
            usage = {"perplexity": perplexity(counts), "usage": (counts > 0).float().mean()}
            self.log_dict({f"train/{k}": v for k, v in (terms | usage).items() if k != "loss"})
            self.log("train/restarts", self.quantizer.restarts.float(), reduce_fx="max")
        return terms["loss"]

    def on_validation_epoch_start(self) -> None:
        if self.recount_codes and not self.trainer.sanity_checking:
            self._count_training_codes()
        self._epoch_counts = torch.zeros(self.num_codes, dtype=torch.long, device=self.device)

    def on_test_epoch_start(self) -> None:
        if self.recount_codes and int(self.code_counts.sum()) == 0:
            self._count_training_codes()
        self._epoch_counts = torch.zeros(self.num_codes, dtype=torch.long, device=self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(images_of(batch), "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x = images_of(batch)
        self._evaluate(x, "test")
        self.test_metrics.update(x, self.reconstruct(x), self._value_range(), None)
        self.log_dict({f"test/{k}": m for k, m in self.test_metrics.metrics(False).items()})
        self._update_bits(x)
        counted = int(self.code_counts.sum()) > 0  # without frequencies there is no information content to log
        self.log_dict({f"test/{k}": m for k, m in self.bit_metrics.items() if counted or k != "bits_information"})

    def _evaluate(self, x: Tensor, stage: str) -> None:
        terms, counts = self.loss_terms(x)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, sync_dist=True, prog_bar=stage == "val")
        assert self._epoch_counts is not None
        self._epoch_counts += counts

    def on_validation_epoch_end(self) -> None:
        self._log_usage("val")

    def on_test_epoch_end(self) -> None:
        self._log_usage("test")

    def _log_usage(self, stage: str) -> None:
        """Code usage over the whole split (all processes): perplexity, share of codes used, codes never used."""
        counts = self.trainer.strategy.reduce(self._epoch_counts, reduce_op="sum")
        used = int((counts > 0).sum())
        self.log_dict({f"{stage}/perplexity": perplexity(counts), f"{stage}/usage": used / self.num_codes,
                       f"{stage}/dead_codes": float(self.num_codes - used)})  # fmt: skip

    def _update_bits(self, x: Tensor) -> None:
        """The rate of each test image: the bytes :meth:`compress` makes of it (range-coded under the code frequencies,
        per grid position when counted so; fixed-length without frequencies), the fixed-length ``grid·log2 K`` and
        the information content ``-Σ log2 p(code)`` under the same frequencies, all in bits."""
        codes = self.codes(x)
        fixed = math.prod(codes.shape[1:]) * math.log2(self.num_codes)
        self.bit_metrics["bits_fixed"].update(torch.full((len(x),), fixed, device=self.device))
        counted = int(self.code_counts.sum()) > 0
        stored = self.compress(x, None if counted else "fixed")
        self.bit_metrics["bits_per_image"].update(torch.tensor([8.0 * len(b) for b in stored], device=self.device))
        if counted:
            bits = information_bits(codes, self.code_probabilities()).float()
            self.bit_metrics["bits_information"].update(bits)

    def _count_training_codes(self) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None:
            rank_zero_warn("VQVAEModule(recount_codes=True) needs a DataModule to count the codes of its train split")
            return
        splits = getattr(datamodule, "splits", None)  # an ImageDataModule: every image, none dropped or shuffled
        if isinstance(splits, dict) and "train" in splits:
            # its own generator: the loader's seed draw must not move the training RNG (exact resume)
            batch_size = getattr(datamodule, "batch_size", 64)
            loader: Iterable[Any] = DataLoader(splits["train"], batch_size=batch_size, generator=torch.Generator())
        else:
            loader = datamodule.train_dataloader()
        self.count_codes(self._apply_batch_transfer_handler(batch) for batch in loader)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """``{"inputs", "reconstructions"}``, each ``(B, C, H, W)`` in the data's pixel range; the reconstructions are
        what :meth:`decompress` makes of :meth:`compress`."""
        x = images_of(batch)
        return {"inputs": x, "reconstructions": self.reconstruct(x)}
