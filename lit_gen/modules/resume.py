"""Random-number state in checkpoints, so that a resumed run draws the same noise as an uninterrupted one."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lit_gen.modules.checked_loading import CheckedLoading

RNG_KEY = "lit_gen_rng_states"


class ResumableRNG(CheckedLoading):
    """Saves every process's torch RNG states (CPU, and the process's CUDA device) with each checkpoint, plus rank 0's
    numpy and Python states (lit_gen draws from neither), and restores them right before the first training step
    after a resume (not on a plain ``load_from_checkpoint``). Under DDP each process draws its own training noise."""

    _pending_rng: dict[str, Any] | None = None

    def on_train_start(self) -> None:
        super().on_train_start()
        # seed_everything gives every process the same seed: offset it by the rank, so that each process draws its
        # own noise (rank 0 keeps the single-process stream). A resume then restores each rank's saved state.
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # Runs on every process (only rank 0 writes): gather each rank's torch state so each gets its own back.
        cpu = torch.get_rng_state()
        gathered = self.all_gather(cpu.to(self.device)) if self._trainer is not None else cpu
        states: dict[str, Any] = {
            "torch": gathered.reshape(-1, cpu.numel()).cpu(),
            "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "python": random.getstate(),
        }
        if self.device.type == "cuda":
            cuda = torch.cuda.get_rng_state(self.device)
            states["cuda"] = self.all_gather(cuda.to(self.device)).reshape(-1, cuda.numel()).cpu()
        checkpoint[RNG_KEY] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._pending_rng = checkpoint.get(RNG_KEY)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self._pending_rng is None:
            return
        states, self._pending_rng = self._pending_rng, None
        per_rank = states["torch"]
        rank = self.trainer.global_rank
        if per_rank.shape[0] != self.trainer.world_size:
            rank_zero_warn(
                f"the checkpoint holds RNG states of {per_rank.shape[0]} processes but {self.trainer.world_size} run "
                "now: each process continues with rank 0's state, so the noise differs from an uninterrupted run"
            )
            rank = 0
        torch.set_rng_state(per_rank[rank].clone())
        np.random.set_state(_numpy_state_from_tensors(states["numpy"]))
        random.setstate(states["python"])
        if "cuda" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"][rank].clone(), self.device)


def _numpy_state_to_tensors(state: tuple) -> tuple:
    """numpy's MT19937 state with its key array as a tensor, loadable with ``torch.load(weights_only=True)``."""
    name, keys, pos, has_gauss, cached = state
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


def _numpy_state_from_tensors(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, keys.numpy().astype(np.uint32), pos, has_gauss, cached


def resumed_past_an_epoch_end(trainer: Any) -> bool:
    """Whether this fit resumed from a checkpoint written in ``on_train_batch_end`` of an epoch's last batch.

    Lightning then counts that epoch as finished without running its end (validation, ``on_train_epoch_end``), so
    epoch-end work a module does itself (e.g. stepping its schedulers under manual optimization) has to be done at
    the start of the resumed run to continue as the uninterrupted run did. Reads the fit loop's restart stage (set
    before ``on_train_start``).
    """
    epoch_loop = trainer.fit_loop.epoch_loop
    return bool(epoch_loop.restarted_on_train_batch_end and epoch_loop.batch_progress.is_last_batch)
