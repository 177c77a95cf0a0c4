"""Lightning's weight-averaging callbacks on lit_gen modules: counters stay exact, bool flags do not crash them."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging

from lit_gen import GANModule, VQVAEModule
from lit_gen.nets import VectorQuantizer
from tests.helpers import digits, tiny_gan, trainer
from tests.test_compression import tiny_vqvae

CALLBACKS = [EMAWeightAveraging, WeightAveraging]


def fit(module: L.LightningModule, tmp_path: Path, callbacks: list, value_range=(-1.0, 1.0), **kwargs) -> L.Trainer:
    t = trainer(tmp_path, limit_train_batches=6, limit_val_batches=1, callbacks=callbacks, **kwargs)
    t.fit(module, datamodule=digits(value_range=value_range))
    return t


@pytest.mark.parametrize("callback", CALLBACKS)
def test_gan_counters_stay_exact_under_weight_averaging(callback, tmp_path: Path) -> None:
    """Averaging the whole module used to average the integer buffers too (generator_steps 1 instead of 6)."""
    module = tiny_gan(ema_decay=0.9)
    t = fit(module, tmp_path, [callback()], enable_checkpointing=True)
    assert t.global_step == 12
    assert module.generator_steps.item() == 6 and module.images_seen.item() == 6 * 16
    assert module.skipped_steps.item() == 0 and module.generator_ema.n_averaged.item() == 6
    # the averaged weights reached the module, the counters did not
    averaged = t.callbacks[0]._average_model  # the callback's AveragedModel: read-only check of what it holds
    assert torch.equal(next(module.generator.parameters()), next(averaged.module.generator.parameters()))
    # the checkpoint holds the averaged weights and the live counters; it loads and predicts
    ckpt = torch.load(next(Path(tmp_path).rglob("*.ckpt")), weights_only=False)
    assert ckpt["state_dict"]["generator_steps"].item() == 6 and ckpt["state_dict"]["images_seen"].item() == 96
    assert ckpt["state_dict"]["generator_ema.n_averaged"].item() == 6
    loaded = GANModule.load_from_checkpoint(
        next(Path(tmp_path).rglob("*.ckpt")), generator=tiny_gan().generator, discriminator=tiny_gan().discriminator
    )
    assert loaded.generator_steps.item() == 6 and loaded.generator_ema.n_averaged.item() == 6
    samples = trainer(tmp_path).predict(module, datamodule=digits())
    assert samples[0]["samples"].shape == (16, 1, 8, 8) and bool(torch.isfinite(samples[0]["samples"]).all())


@pytest.mark.parametrize("callback", CALLBACKS)
def test_vqvae_trains_under_weight_averaging_with_exact_codebook_state(callback, tmp_path: Path) -> None:
    """The quantizer's bool ``initialized`` made WeightAveraging fail; its counters must not be averaged either."""
    plain = tiny_vqvae(quantizer=VectorQuantizer(num_codes=16, code_dim=4, restart_after=2))
    fit(plain, tmp_path, [], value_range=(0.0, 1.0))
    module = tiny_vqvae(quantizer=VectorQuantizer(num_codes=16, code_dim=4, restart_after=2))
    t = fit(module, tmp_path, [callback()], value_range=(0.0, 1.0))
    q, p = module.quantizer, plain.quantizer  # averaging never changes the training steps themselves
    assert q.initialized.item() is True and q.restarts.item() == p.restarts.item() > 0
    assert torch.equal(q.unused_steps, p.unused_steps) and t.global_step == 6
    assert torch.isfinite(t.callback_metrics["val/loss"])
    out = trainer(tmp_path).predict(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert out and all(bool(torch.isfinite(v).all()) for v in out[0].values() if isinstance(v, torch.Tensor))


def test_counters_are_not_buffers_but_keep_their_state_dict_keys() -> None:
    """Checkpoints written when the counters were buffers (same keys, dtypes) load into the new modules."""
    gan, vq = tiny_gan(ema_decay=0.9), tiny_vqvae()
    buffers = {name for name, _ in gan.named_buffers()} | {name for name, _ in vq.named_buffers()}
    counters = {"generator_steps", "images_seen", "skipped_steps", "generator_ema.n_averaged"}
    counters |= {"quantizer.initialized", "quantizer.restarts", "quantizer.unused_steps"}
    assert not counters & buffers
    old = gan.state_dict() | {"generator_steps": torch.tensor(7), "images_seen": torch.tensor(112)}
    old |= {"generator_ema.n_averaged": torch.tensor(5)}
    assert {k: old[k].dtype for k in ("generator_steps", "generator_ema.n_averaged")} == {
        "generator_steps": torch.long,
        "generator_ema.n_averaged": torch.long,
    }
    gan.load_state_dict(old)  # strict
    assert (gan.generator_steps.item(), gan.images_seen.item(), gan.generator_ema.n_averaged.item()) == (7, 112, 5)
    state = vq.state_dict()
    assert state["quantizer.initialized"].dtype == torch.bool and state["quantizer.unused_steps"].shape == (16,)
    state |= {"quantizer.initialized": torch.tensor(False), "quantizer.restarts": torch.tensor(3)}
    fresh = tiny_vqvae()
    fresh.load_state_dict(state)
    assert fresh.quantizer.initialized.item() is False and fresh.quantizer.restarts.item() == 3
    with pytest.raises(RuntimeError, match="Missing key.*generator_steps"):
        tiny_gan().load_state_dict({k: v for k, v in tiny_gan().state_dict().items() if k != "generator_steps"})


def test_a_vqvae_checkpoint_round_trips_its_codebook_state(tmp_path: Path) -> None:
    """The counters and the flag travel through a checkpoint file and load_from_checkpoint."""
    module = tiny_vqvae()
    t = fit(module, tmp_path, [], value_range=(0.0, 1.0))
    path = tmp_path / "old.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["state_dict"]["quantizer.restarts"].item() == module.quantizer.restarts.item()
    loaded = VQVAEModule.load_from_checkpoint(path, **{k: getattr(tiny_vqvae(), k) for k in ("encoder", "decoder")},
                                              quantizer=VectorQuantizer(num_codes=16, code_dim=4))  # fmt: skip
    assert torch.equal(loaded.quantizer.unused_steps, module.quantizer.unused_steps)
    assert loaded.quantizer.initialized.item() is True
