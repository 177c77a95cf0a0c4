"""Gradient synchronisation for manual optimization under DDP, one optimizer at a time.

DDP's reducer expects every parameter of the wrapped LightningModule to receive a gradient in each backward pass.
A GAN's discriminator step leaves the generator without one (and the generator step freezes the discriminator), so
plain ``strategy=ddp`` fails with "Expected to have finished reduction in the prior iteration ... parameters that
were not used in producing the loss" (Lightning issues #20328, #20685, #19238). ``find_unused_parameters=True``
works around it at the price of a graph traversal per backward. Here the reducer is bypassed: before each
``manual_backward`` the DDP wrapper's ``require_backward_grad_sync`` is cleared (what
``DistributedDataParallel.no_sync`` does; Lightning sets it back after every training step), and after the backward
the gradients of the optimizer about to step are averaged across processes in one flat all-reduce.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class ManualGradSync(L.LightningModule):
    """Mixin for LightningModules with manual optimization: call :meth:`sync_gradients` between backward and step."""

    _manual_grad_sync = False

    def on_train_start(self) -> None:
        super().on_train_start()
        self._manual_grad_sync = isinstance(self.trainer.strategy.model, DistributedDataParallel)
        if not self._manual_grad_sync and self.trainer.world_size > 1:
            raise NotImplementedError(
                f"{type(self).__name__} supports the ddp strategies for multi-process training, "
                f"got {type(self.trainer.strategy).__name__}; use Trainer(strategy='ddp') (--trainer.strategy=ddp)"
            )

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Lightning's ``manual_backward`` with DDP's reducer bypassed; follow it with :meth:`sync_gradients`."""
        if self._manual_grad_sync:
            self.trainer.strategy.model.require_backward_grad_sync = False  # type: ignore[union-attr]
        super().manual_backward(loss, *args, **kwargs)

    def sync_gradients(self, optimizer: Any) -> None:
        """Average the gradients of ``optimizer``'s parameters over all processes (no-op on one process)."""
        if not self._manual_grad_sync:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        # torch.distributed directly: Lightning's strategy.reduce adds a barrier before every all-reduce
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat /= self.trainer.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def sync_buffers(self) -> None:
        """Average batch-norm running statistics over the processes, so that every process evaluates the same model."""
        if not self._manual_grad_sync:
            return
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
                    for buffer in (module.running_mean, module.running_var):
                        if buffer is not None:
                            buffer.copy_(self.trainer.strategy.reduce(buffer.clone(), reduce_op="mean"))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Average the batch-norm statistics first: mid-epoch each process has its own, and only rank 0 writes.

        Every process runs this hook (``trainer.save_checkpoint`` is collective), so the all-reduce is safe; the
        checkpoint's ``state_dict`` holds views of the buffers, which the averaging updates in place.
        """
        self.sync_buffers()
        super().on_save_checkpoint(checkpoint)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        if self.trainer.state.fn == TrainerFn.FITTING:  # fit's validation runs before on_train_epoch_end
            self.sync_buffers()
