"""Test-time likelihood and reconstruction metrics of a VAE, averaged over the test set by torchmetrics."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torchmetrics import MeanMetric


class LikelihoodMetrics(nn.Module):
    """Per-image means of ``nll`` (importance-weighted estimate, nats), ``bpd`` (the same in bits per dimension),
    ``mse`` of the mean reconstruction and its ``psnr`` (dB, over the data's pixel range), and the ``rate`` in bits
    per image (a Gaussian VAE's KL, the bits-back rate of its latent) when given.

    Bits per dimension are ``nll / (D · ln 2)``; they match published figures only for a discrete likelihood on
    8-bit pixels (a Bernoulli likelihood on [0, 1] intensities is not one).
    """

    def __init__(self) -> None:
        super().__init__()
        self.nll, self.bpd, self.mse, self.psnr = MeanMetric(), MeanMetric(), MeanMetric(), MeanMetric()
        self.rate = MeanMetric()
        self._with_rate = False

    def update(
        self,
        x: Tensor,
        recon: Tensor,
        value_range: tuple[float, float],
        log_px: Tensor | None,
        rate: Tensor | None = None,
    ) -> None:
        """``x``, ``recon (B, *shape)`` in ``value_range``; ``log_px (B,)``, the estimate of log p(x), or None;
        ``rate (B,)`` bits per image, or None."""
        if rate is not None:
            self.rate.update(rate)
            self._with_rate = True
        low, high = value_range
        mse = (recon.float().clamp(low, high) - x.float()).square().flatten(1).mean(1)
        self.mse.update(mse)
        self.psnr.update(10 * ((high - low) ** 2 / mse.clamp(min=1e-12)).log10())
        if log_px is not None:
            self.nll.update(-log_px)
            self.bpd.update(-log_px / (x[0].numel() * math.log(2)))

    def metrics(self, with_nll: bool) -> dict[str, MeanMetric]:
        """The metric objects to log (Lightning computes and syncs them at the end of the epoch)."""
        names = ("nll", "bpd", "mse", "psnr") if with_nll else ("mse", "psnr")
        return {name: getattr(self, name) for name in names + (("rate",) if self._with_rate else ())}
