"""Faults during training: NaN losses (stop or skip), exceptions, and the checkpoints they leave behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_gen import GANModule, VAEModule
from lit_gen.callbacks import SaveOnException
from lit_gen.cli import resolve_last_checkpoint
from lit_gen.modules.guards import NonFiniteLossError
from lit_gen.nets import MLPDecoder, MLPDiscriminator, MLPEncoder, MLPGenerator
from tests.helpers import digits, tiny_gan, tiny_vae, trainer
from tests.probes import InjectAtBatch


def gan_nets() -> dict:
    return {"generator": MLPGenerator(4, (1, 8, 8), hidden=(16,)), "discriminator": MLPDiscriminator((1, 8, 8), (16,))}


def vae_nets() -> dict:
    return {"encoder": MLPEncoder((1, 8, 8), 2, hidden=(16,)), "decoder": MLPDecoder(2, (1, 8, 8), hidden=(16,))}


CASES = [(tiny_gan, GANModule, gan_nets, "discriminator loss is nan at global step 4 \\(epoch 0, batch 2\\)"),
         (tiny_vae, VAEModule, vae_nets, "VAE loss is nan at global step 2 \\(epoch 0, batch 2\\)")]  # fmt: skip


@pytest.mark.parametrize(("make", "cls", "nets", "message"), CASES)
def test_nan_loss_stops_with_the_step_and_leaves_the_last_good_weights(make, cls, nets, message, tmp_path: Path):
    inject = InjectAtBatch(at=2)
    module = make()
    t = trainer(
        tmp_path,
        limit_train_batches=5,
        callbacks=[inject, SaveOnException(dirpath=str(tmp_path))],
        enable_checkpointing=True,
    )
    with pytest.raises(NonFiniteLossError, match=message + ".*on_exception.ckpt.*nonfinite='skip'"):
        t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    saved = cls.load_from_checkpoint(tmp_path / "on_exception.ckpt", **nets())
    for key, before in inject.weights_before.items():
        assert torch.equal(saved.state_dict()[key], before), key  # the NaN step was not applied
        assert torch.isfinite(before.float()).all()


def test_gan_skips_non_finite_steps_when_asked(tmp_path: Path) -> None:
    module = tiny_gan(nonfinite="skip")
    t = trainer(tmp_path, limit_train_batches=5, limit_val_batches=0, callbacks=[InjectAtBatch(at=2)])
    t.fit(module, datamodule=digits())
    assert module.skipped_steps.item() == 1  # the discriminator step on the NaN batch; its generator step ran
    assert t.global_step == 2 * 5 - 1 and module.generator_steps.item() == 5
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_vae_skips_non_finite_batches_when_asked(tmp_path: Path) -> None:
    module = tiny_vae(nonfinite="skip")
    t = trainer(tmp_path, limit_train_batches=5, limit_val_batches=0, callbacks=[InjectAtBatch(at=2)])
    t.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    # Lightning still counts the skipped batch in global_step; a NaN backward would have made the weights NaN
    assert t.global_step == 5 and all(torch.isfinite(p).all() for p in module.parameters())


def test_an_exception_mid_epoch_leaves_a_resumable_checkpoint(tmp_path: Path) -> None:
    callbacks = [InjectAtBatch(at=3, what="error"), SaveOnException()]
    t = trainer(tmp_path, limit_train_batches=6, callbacks=callbacks, enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="injected failure"):
        t.fit(tiny_gan(), datamodule=digits())
    ckpt = tmp_path / "checkpoints" / "on_exception.ckpt"  # beside the default ModelCheckpoint's files
    assert torch.load(ckpt, weights_only=True)["global_step"] == 6
    resumed = trainer(tmp_path, limit_train_batches=6)
    module = tiny_gan()
    resumed.fit(module, datamodule=digits(), ckpt_path=ckpt)
    assert module.generator_steps.item() == 6 and resumed.global_step == 12


def test_a_stray_on_exception_checkpoint_is_not_resumed_by_a_new_fit(tmp_path: Path, monkeypatch) -> None:
    # Lightning's fit(ckpt_path=None) resumes from an OnExceptionCheckpoint's file when one exists; before the fix a
    # crashed run's ./on_exception.ckpt was silently loaded by every later fit started in that directory.
    monkeypatch.chdir(tmp_path)
    callbacks = [InjectAtBatch(at=3, what="error"), SaveOnException()]
    t = trainer(tmp_path, limit_train_batches=6, callbacks=callbacks, enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="injected failure"):
        t.fit(tiny_gan(), datamodule=digits())
    assert (tmp_path / "checkpoints" / "on_exception.ckpt").exists()
    fresh = trainer(tmp_path, limit_train_batches=2, callbacks=[SaveOnException()], enable_checkpointing=True)
    module = tiny_gan()
    fresh.fit(module, datamodule=digits())
    assert module.generator_steps.item() == 2  # started from scratch, not from the crashed run's 3 steps


def test_a_new_fit_does_not_resume_an_earlier_runs_last_checkpoint(tmp_path: Path) -> None:
    # With an OnExceptionCheckpoint among the callbacks, Lightning resumes `fit(ckpt_path=None)` from "last".
    def run(batches: int) -> GANModule:
        checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
        t = trainer(tmp_path, limit_train_batches=batches, callbacks=[checkpoint, SaveOnException()],
                    enable_checkpointing=True)  # fmt: skip
        module = tiny_gan()
        t.fit(module, datamodule=digits())
        return module

    run(3)
    assert (tmp_path / "ckpts" / "last.ckpt").exists()
    assert run(2).generator_steps.item() == 2


def test_ckpt_path_last_prefers_the_newest_of_last_and_on_exception(tmp_path: Path) -> None:
    from jsonargparse import Namespace

    for version, name, mtime in [("version_0", "last.ckpt", 100), ("version_1", "last.ckpt", 200),
                                 ("version_1", "on_exception.ckpt", 300)]:  # fmt: skip
        path = tmp_path / "gan" / version / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    logger = Namespace(class_path="CSVLogger", init_args=Namespace(save_dir=str(tmp_path), name="gan", version=None))
    config = Namespace(ckpt_path="last", trainer=Namespace(logger=logger, default_root_dir=None))
    assert resolve_last_checkpoint(config) == tmp_path / "gan" / "version_1" / "checkpoints" / "on_exception.ckpt"
    assert config.trainer.logger.init_args.version == "version_1"


@pytest.mark.parametrize("cls", [GANModule, VAEModule])
def test_unknown_nonfinite_policy(cls) -> None:
    with pytest.raises(ValueError, match="nonfinite must be 'stop' or 'skip'"):
        cls(nonfinite="ignore")
