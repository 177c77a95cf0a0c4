"""Exact resume at an epoch's end and at an epoch's last batch, the commonest resumes (a finished run extended with a
larger ``max_epochs``; a step checkpoint that falls on an epoch's last batch): the resumed run ends with the very
weights, optimizer states and counters of an uninterrupted run, for GAN (manual optimization), VAE and VQ-VAE.

Lightning creates the first epoch's iterator of a resumed run before it calls ``set_epoch``, and restores the
sampler's saved state even when that state belongs to a finished epoch: lit_gen's sampler draws its order lazily and
ignores the state of a finished epoch (``EpochSeededRandomSampler``)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_gen import VQVAEModule
from lit_gen.data.base import EpochSeededRandomSampler
from lit_gen.nets import VectorQuantizer, VQDecoder, VQEncoder
from tests.helpers import digits, tiny_gan, tiny_vae
from tests.test_resume import ROOT, assert_same, command, env, final_state

BATCHES = 5  # an epoch: 1,437 training digits in batches of 256, the last 157 dropped


def tiny_vqvae() -> VQVAEModule:
    L.seed_everything(0, verbose=False)
    return VQVAEModule(
        encoder=VQEncoder((1, 8, 8), code_dim=4, width=8, res_blocks=1),
        decoder=VQDecoder(4, (1, 8, 8), width=8, res_blocks=1),
        quantizer=VectorQuantizer(8, 4, restart_after=3),
    )


MODULES: dict[str, tuple[Callable[[], L.LightningModule], tuple[float, float], int]] = {
    # name: (builder, value_range, optimizer steps per batch = Lightning's global_step per batch)
    "gan": (tiny_gan, (-1.0, 1.0), 2),
    "vae": (tiny_vae, (0.0, 1.0), 1),
    "vqvae": (tiny_vqvae, (0.0, 1.0), 1),
}


class Record(L.Callback):
    """The labels of every training batch, to name the epoch whose batches differ."""

    def __init__(self) -> None:
        self.labels: list[list[int]] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: tuple, i: int) -> None:
        self.labels.append(batch[1].tolist())


class Crash(Exception):
    """The stand-in for a killed process."""


class Interrupt(L.Callback):
    """Raises at the first hook after training step ``step`` and its step checkpoint (checkpoint callbacks run last)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def _check(self, trainer: L.Trainer) -> None:
        if trainer.global_step >= self.step and not trainer.sanity_checking:
            raise Crash(f"stopped after step {trainer.global_step}")

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, *args: object) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, *args: object) -> None:
        self._check(trainer)


def fit(
    name: str, directory: Path, max_epochs: int, *callbacks: L.Callback, ckpt_path: Path | None = None, steps: int = 0
) -> dict:
    """Fit the tiny module ``name`` on digits (5 whole batches an epoch), saving ``last.ckpt`` at every epoch's end
    and, with ``steps``, every ``steps`` training steps; returns the state at the end of the fit (after the last
    validation, which ``last.ckpt`` may predate)."""
    build, value_range, _ = MODULES[name]
    checkpoints = [ModelCheckpoint(directory, save_last=True, save_top_k=0)]
    if steps:
        checkpoints.append(ModelCheckpoint(directory, every_n_train_steps=steps, save_top_k=0, save_last=True))
    trainer = L.Trainer(
        default_root_dir=directory, accelerator="cpu", max_epochs=max_epochs, limit_val_batches=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[*checkpoints, *callbacks],
    )  # fmt: skip
    trainer.fit(build(), datamodule=digits(value_range, batch_size=256), ckpt_path=ckpt_path)
    assert trainer.num_training_batches == BATCHES
    trainer.save_checkpoint(directory / "final.ckpt")
    return torch.load(directory / "final.ckpt", map_location="cpu", weights_only=False)


def assert_same_training(a: dict, b: dict) -> None:
    """Weights, buffers (lit_gen's own counters among them), optimizer states and the counters a run reads: epoch,
    global step, finished epochs, the logging step. (Lightning's ``epoch_progress`` ``ready``/``started`` counts lag by
    one after a restart at an epoch's last batch, its own bookkeeping, read by nothing in lit_gen.)"""
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert_same(a["state_dict"], b["state_dict"], "state_dict")
    assert_same(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    loop_a, loop_b = a["loops"]["fit_loop"], b["loops"]["fit_loop"]
    for count in ("processed", "completed"):
        assert loop_a["epoch_progress"]["total"][count] == loop_b["epoch_progress"]["total"][count], count
    assert loop_a["epoch_loop.state_dict"] == loop_b["epoch_loop.state_dict"]  # _batches_that_stepped


@pytest.mark.parametrize("name", list(MODULES))
def test_extending_a_finished_run_equals_an_uninterrupted_run(name: str, tmp_path: Path) -> None:
    straight, resumed = Record(), Record()
    expected = fit(name, tmp_path / "straight", 2, straight)
    first = fit(name, tmp_path / "resumed", 1, resumed)
    assert first["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 1
    got = fit(name, tmp_path / "resumed", 2, resumed, ckpt_path=tmp_path / "resumed" / "last.ckpt")
    assert resumed.labels[BATCHES:] == straight.labels[BATCHES:], "the resumed epoch 1 draws other batches"
    assert got["global_step"] == 2 * BATCHES * MODULES[name][2]
    assert_same_training(expected, got)


@pytest.mark.parametrize("name", list(MODULES))
def test_resume_from_a_step_checkpoint_at_an_epochs_last_batch(name: str, tmp_path: Path) -> None:
    steps_per_epoch = BATCHES * MODULES[name][2]
    straight, resumed = Record(), Record()
    expected = fit(name, tmp_path / "straight", 2, straight, steps=steps_per_epoch)
    with pytest.raises(Crash):
        fit(name, tmp_path / "resumed", 2, resumed, Interrupt(steps_per_epoch), steps=steps_per_epoch)
    interrupted = torch.load(tmp_path / "resumed" / "last.ckpt", map_location="cpu", weights_only=False)
    assert interrupted["global_step"] == steps_per_epoch  # the step checkpoint of epoch 0's last batch
    assert interrupted["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 0  # written mid-epoch
    last = tmp_path / "resumed" / "last.ckpt"
    got = fit(name, tmp_path / "resumed", 2, resumed, ckpt_path=last, steps=steps_per_epoch)
    assert len(resumed.labels) == 2 * BATCHES, "the resumed run did not train epoch 1 in full"
    assert resumed.labels == straight.labels
    assert_same_training(expected, got)


def test_resume_at_an_epochs_last_batch_runs_that_epochs_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    halve = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    monkeypatch.setitem(MODULES, "gan", (partial(tiny_gan, generator_scheduler=halve), (-1.0, 1.0), 2))
    expected = fit("gan", tmp_path / "straight", 2, steps=2 * BATCHES)
    with pytest.raises(Crash):
        fit("gan", tmp_path / "resumed", 2, Interrupt(2 * BATCHES), steps=2 * BATCHES)
    got = fit("gan", tmp_path / "resumed", 2, ckpt_path=tmp_path / "resumed" / "last.ckpt", steps=2 * BATCHES)
    assert got["lr_schedulers"] == expected["lr_schedulers"]  # last_epoch 1 against 2 before
    assert_same_training(expected, got)


def test_the_sampler_orders_are_unchanged_and_a_state_resumes_only_its_own_epoch() -> None:
    sampler = EpochSeededRandomSampler(range(10), seed=3)
    it = iter(sampler)  # Lightning makes a resumed run's first iterator before it calls set_epoch
    sampler.set_epoch(2)
    assert list(it) == torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()
    it = iter(sampler)
    first = [next(it) for _ in range(4)]
    state = it.state_dict()
    assert state == {"epoch": 2, "position": 4}
    again = iter(sampler)
    again.load_state_dict(state)
    assert first + list(again) == sampler.order(2)  # the same epoch continues where it stopped
    sampler.set_epoch(3)
    later = iter(sampler)
    later.load_state_dict({"epoch": 2, "position": 10})  # a finished epoch's state: epoch 3 from its start
    assert list(later) == sampler.order(3)


def test_a_sampler_state_written_by_lit_gen_0_1_0_still_resumes() -> None:
    """lit_gen 0.1.0 saved torchdata's RandomSampler state: the generator at the epoch's start and the count."""
    sampler = EpochSeededRandomSampler(range(10), seed=3)
    sampler.set_epoch(1)
    seeded = torch.Generator().manual_seed(4).get_state()
    it = iter(sampler)
    it.load_state_dict({"generator": seeded, "yielded": 6})
    assert list(it) == sampler.order(1)[6:]
    sampler.set_epoch(2)  # the saved epoch has ended
    it = iter(sampler)
    it.load_state_dict({"generator": seeded, "yielded": 6})
    assert list(it) == sampler.order(2)


CLI_RUNS = {  # config, overrides that shrink the nets, optimizer steps per batch
    "gan": ("configs/gan/digits.yaml", ("--model.init_args.generator.init_args.hidden=[32]",
                                        "--model.init_args.discriminator.init_args.hidden=[32]"), 2),
    "vae": ("configs/vae/digits.yaml", ("--model.init_args.encoder.init_args.hidden=[32]",
                                        "--model.init_args.decoder.init_args.hidden=[32]"), 1),
    "vqvae": ("configs/vae/vqvae_digits.yaml", ("--model.init_args.encoder.init_args.width=8",
                                                "--model.init_args.decoder.init_args.width=8"), 1),
}  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param("gan", marks=pytest.mark.slow), "vae", pytest.param("vqvae", marks=pytest.mark.slow)]
)
def test_cli_extend_a_finished_run_then_resume_a_kill_after_an_epochs_last_batch(name: str, tmp_path: Path) -> None:
    """Through `lit-gen fit`: a 1-epoch run, extended to 3 epochs with `--ckpt_path last` and SIGKILLed right after
    the step checkpoint (every 50 steps) written at the last batch of epoch 1, resumed again: it ends as a straight
    3-epoch run does. Batches of 57 make an epoch of 25 batches, so step 50 ends epoch 1 (epoch 0 for the GAN's two
    steps a batch; its kill comes at step 100, also a step checkpoint)."""
    config, shrink, per_batch = CLI_RUNS[name]
    epoch_steps = 25 * per_batch
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"

    def run(save_dir: Path, max_epochs: int, *extra: str) -> subprocess.CompletedProcess:
        record = ["--trainer.callbacks+=tests.probes.RecordBatches", f"--trainer.callbacks.path={save_dir}.txt"]
        args = command(config, save_dir, *shrink, "--data.init_args.batch_size=57", *record, *extra)
        args[args.index("--trainer.max_epochs=3")] = f"--trainer.max_epochs={max_epochs}"
        return subprocess.run(args, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)

    def ok(done: subprocess.CompletedProcess) -> None:
        assert done.returncode == 0, done.stderr[-3000:]

    ok(run(straight, 3))
    ok(run(resumed, 1))
    assert final_state(resumed)["global_step"] == epoch_steps
    kill = ["--trainer.callbacks+=tests.probes.KillAfterStep", f"--trainer.callbacks.step={2 * epoch_steps}"]
    assert run(resumed, 3, "--ckpt_path=last", *kill).returncode == -signal.SIGKILL
    interrupted = final_state(resumed)
    assert interrupted["global_step"] == 2 * epoch_steps  # the step checkpoint at epoch 1's last batch
    assert interrupted["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"] == 1  # epoch 1 not closed
    ok(run(resumed, 3, "--ckpt_path=last"))

    def batches(save_dir: Path) -> list[str]:  # global step and label sum of every training batch
        return [" ".join(line.split()[:2]) for line in Path(f"{save_dir}.txt").read_text().splitlines()]

    assert batches(resumed) == batches(straight)
    assert len(list(resumed.glob("*/version_*"))) == 1
    # last.ckpt holds the same training state, written at a different moment: a ModelCheckpoint(save_last=True) that
    # saved nothing in its process writes last.ckpt again at the end of training (the resumed run's step checkpoint)
    a, b = final_state(straight), final_state(resumed)
    assert a["global_step"] == b["global_step"] == 3 * epoch_steps
    assert_same(a["state_dict"], b["state_dict"], "state_dict")
    assert_same(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    loop_a, loop_b = a["loops"]["fit_loop"], b["loops"]["fit_loop"]
    assert loop_a["epoch_progress"]["total"]["processed"] == loop_b["epoch_progress"]["total"]["processed"] == 3
    assert loop_a["epoch_loop.state_dict"] == loop_b["epoch_loop.state_dict"]  # _batches_that_stepped
