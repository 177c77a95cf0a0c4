"""Checkpoints are written atomically: a save killed half-way leaves the previous checkpoint loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lit_gen.callbacks import AtomicCheckpointIO
from lit_gen.cli import LitGenCLI

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time, torch
import lit_gen.callbacks.checkpoint as ckpt

def half_written_then_hang(obj, f):  # a slow disk: part of the file is out, then the process is killed
    f.write(b"PK\\x03\\x04 half a checkpoint" * 1000)
    f.flush()
    open(sys.argv[2], "w").close()
    time.sleep(600)

ckpt.torch.save = half_written_then_hang
ckpt.AtomicCheckpointIO().save_checkpoint({"step": 2}, sys.argv[1])
"""


def test_sigkill_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path, marker = tmp_path / "last.ckpt", tmp_path / "writing"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "weights": torch.arange(4.0)}, path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(marker)], cwd=ROOT,
                             env=os.environ | {"PYTHONPATH": str(ROOT)})  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 1 and torch.equal(loaded["weights"], torch.arange(4.0))


def test_an_error_during_a_save_keeps_the_previous_checkpoint_and_no_debris(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def disk_full(obj: object, f) -> None:
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lit_gen.callbacks.checkpoint.torch.save", disk_full)
    with pytest.raises(OSError, match="No space left"):  # the error reaches the user
        io.save_checkpoint({"step": 2}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_the_cli_installs_atomic_checkpoint_io(tmp_path: Path) -> None:
    cli = LitGenCLI(args=["fit", "--config", str(ROOT / "configs/gan/digits.yaml"), "--trainer.fast_dev_run=true",
                          f"--trainer.logger.init_args.save_dir={tmp_path}",
                          f"--trainer.default_root_dir={tmp_path}"])  # fast_dev_run writes into it  # fmt: skip
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
