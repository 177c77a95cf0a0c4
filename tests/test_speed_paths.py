"""The fast paths of the speed work: batches gathered in one indexing operation, training values logged only on the
steps the loggers write, a default progress bar that redraws every 10 batches."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Subset, TensorDataset
from torch.utils.data._utils.collate import default_collate

from lit_gen.cli import LitGenCLI
from lit_gen.data.batched import BatchedView, collate
from tests.helpers import digits, tiny_gan, tiny_vae


def test_batched_view_gathers_what_items_and_collate_give() -> None:
    base = TensorDataset(torch.arange(50).view(50, 1) * 10, torch.arange(50))
    nested = Subset(Subset(base, list(range(49, -1, -1))), [3, 7, 11, 20, 0])  # indices 46, 42, 38, 29, 49
    view = BatchedView(nested)
    got = collate(view.__getitems__([4, 1, 2]))
    expected = default_collate([nested[i] for i in (4, 1, 2)])
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert got[1].tolist() == [49, 42, 38] and len(view) == 5


def test_datamodule_batches_equal_the_per_item_batches_and_splits_stay_plain() -> None:
    dm = digits(batch_size=32)
    dm.setup()
    fast = next(iter(dm.val_dataloader()))
    plain = next(iter(DataLoader(dm.splits["val"], batch_size=32)))  # a user's own loader over a split works
    assert torch.equal(fast[0], plain[0]) and torch.equal(fast[1], plain[1])
    assert fast[0].dtype == torch.uint8 and fast[0].shape == (32, 1, 8, 8)


def logged_steps(log_dir: Path, key: str) -> list[int]:
    with open(log_dir / "metrics.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get(key)]


@pytest.mark.parametrize("make", [tiny_gan, lambda: tiny_vae()], ids=["gan", "vae"])
def test_training_values_are_logged_on_the_loggers_steps_and_the_epochs_last(make, tmp_path: Path) -> None:
    module = make()
    key = "train/d_real" if hasattr(module, "discriminator") else "train/kl"
    logger = CSVLogger(tmp_path)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=12, limit_val_batches=0, log_every_n_steps=5,
                        logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    dm = digits(value_range=(0.0, 1.0)) if key == "train/kl" else digits()
    logged: list[int] = []
    log = module.log

    def count(name: str, *args, **kwargs) -> None:
        if name == key:
            logged.append(trainer.fit_loop.epoch_loop._batches_that_stepped)
        log(name, *args, **kwargs)

    module.log = count
    trainer.fit(module, datamodule=dm)
    assert logged == [4, 9, 11]  # batches 5 and 10 (every 5th), and batch 12, the epoch's last
    assert logged_steps(Path(logger.log_dir), key) == [4, 9]  # what the logger wrote: every 5th, as before
    assert key in trainer.callback_metrics


def test_the_last_step_of_max_steps_is_logged(tmp_path: Path) -> None:
    module = tiny_vae(beta_schedule="linear", beta_warmup_steps=10)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    assert trainer.callback_metrics["train/beta"].item() == pytest.approx(0.2)  # step 2 of the warm-up


def test_the_default_progress_bar_redraws_every_ten_batches(tmp_path: Path) -> None:
    config = str(Path(__file__).resolve().parents[1] / "configs/vae/digits.yaml")
    common = ["fit", "--config", config, "--trainer.max_steps=1", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert LitGenCLI(args=common).trainer.progress_bar_callback.refresh_rate == 10
    own = LitGenCLI(args=[*common, "--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"])
    assert own.trainer.progress_bar_callback.refresh_rate == 1  # a bar the config brings is left alone


def test_compile_and_channels_last_reach_the_nets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compiled: list[str] = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    from lit_gen import VAEModule
    from lit_gen.nets import ConvDecoder, ConvEncoder

    module = VAEModule(encoder=ConvEncoder((1, 8, 8), 2, width=4), decoder=ConvDecoder(2, (1, 8, 8), width=4),
                       compile=True, channels_last=True)  # fmt: skip
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, datamodule=digits(value_range=(0.0, 1.0)))
    trainer.validate(module, datamodule=digits(value_range=(0.0, 1.0)), verbose=False)
    assert compiled == ["ConvEncoder", "ConvDecoder"]  # once each, although setup ran twice
    conv = next(m.weight for m in module.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d))  # (8, 4, 4, 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert "encoder.features.0.weight" in module.state_dict()  # checkpoint keys unchanged


@pytest.mark.slow
def test_a_compiled_gan_takes_the_same_steps(tmp_path: Path) -> None:
    """torch.compile on the CPU (a C++ compiler; ~1 min to compile on 2 cores): the same weights after 6 steps."""
    sums = []
    for compile in (False, True):
        module = tiny_gan(compile=compile)
        trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0)  # fmt: skip
        trainer.fit(module, datamodule=digits())
        sums.append(torch.cat([p.detach().flatten() for p in module.generator.parameters()]))
    assert torch.allclose(sums[0], sums[1], atol=1e-5)


def test_loader_settings_follow_the_source(tmp_path: Path) -> None:
    import os

    from lit_gen.data import ImageFolderDataModule
    from tests.test_data import write_folder

    in_memory = digits().train_dataloader()
    assert in_memory.num_workers == 0 and not in_memory.pin_memory  # no workers for one indexing op; CPU: no pinning
    write_folder(tmp_path, {f"{i}.png": (8, 8) for i in range(10)})
    files = ImageFolderDataModule(root=str(tmp_path), batch_size=2).train_dataloader()
    assert files.num_workers == min(4, os.cpu_count() or 1) and files.persistent_workers  # files decode per item
    assert ImageFolderDataModule(root=str(tmp_path), num_workers=0).train_dataloader().num_workers == 0
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        digits().__class__(num_workers=-1)
