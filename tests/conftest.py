from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# The tests' nets are tiny: one intra-op thread is as fast as two, and two threads spin-wait badly when the 2 CPU cores
# are shared with anything else. Subprocesses (the CLI tests) inherit the variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
