"""The Trainer flags and Lightning callbacks a user combines with GANModule, VAEModule and VQVAEModule.

One cell per (module, flag or callback): each fits tiny nets on the embedded digits for a few batches and asserts
what a user expects of that combination (files written, counters, logged keys, dtypes, equal weights). A cell that
fails because of a known bug is marked in ``XFAIL`` with ``xfail(strict=True)`` naming it, so that the fix turns it
into a failure and the mark goes.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import (
    BatchSizeFinder,
    Callback,
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateFinder,
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
    RichModelSummary,
    StochasticWeightAveraging,
    Timer,
    WeightAveraging,
)
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

from lit_gen import GANModule, VAEModule, VQVAEModule
from lit_gen.nets import (
    MLPDecoder,
    MLPDiscriminator,
    MLPEncoder,
    MLPGenerator,
    VectorQuantizer,
    VQDecoder,
    VQEncoder,
)
from tests.helpers import digits, trainer

BATCHES = 3  # training batches an epoch (tests.helpers.trainer's limit_train_batches)
BATCH_SIZE = 16


@dataclass(frozen=True)
class Kind:
    """One module family: how to build its tiny nets, its data range and the keys it logs."""

    name: str
    cls: type[L.LightningModule]
    nets: Callable[[], dict[str, torch.nn.Module]]
    value_range: tuple[float, float]
    train_key: str
    val_key: str
    steps_per_batch: int  # optimizer steps (global_step) a training batch makes
    deterministic_output: int | None  # forward's output to compare after export: its index, None for a bare tensor

    def module(self, **kwargs: Any) -> L.LightningModule:
        L.seed_everything(0, verbose=False)
        return self.cls(**self.nets(), **kwargs)

    def input_sample(self) -> torch.Tensor:
        return torch.randn(2, 4) if self.cls is GANModule else torch.rand(2, 1, 8, 8)


def _gan_nets() -> dict[str, torch.nn.Module]:
    return {
        "generator": MLPGenerator(latent_dim=4, image_shape=(1, 8, 8), hidden=(16,)),
        "discriminator": MLPDiscriminator(image_shape=(1, 8, 8), hidden=(16,)),
    }


def _vae_nets() -> dict[str, torch.nn.Module]:
    return {
        "encoder": MLPEncoder((1, 8, 8), latent_dim=2, hidden=(16,)),
        "decoder": MLPDecoder(latent_dim=2, image_shape=(1, 8, 8), hidden=(16,)),
    }


def _vqvae_nets() -> dict[str, torch.nn.Module]:
    return {
        "encoder": VQEncoder((1, 8, 8), code_dim=4, width=8),
        "decoder": VQDecoder(4, (1, 8, 8), width=8),
        "quantizer": VectorQuantizer(num_codes=16, code_dim=4),
    }


GAN = Kind("gan", GANModule, _gan_nets, (-1.0, 1.0), "train/g_loss", "val/g_loss", 2, None)
VAE = Kind("vae", VAEModule, _vae_nets, (0.0, 1.0), "train/loss", "val/loss", 1, 1)  # mu: z is drawn
VQVAE = Kind("vqvae", VQVAEModule, _vqvae_nets, (0.0, 1.0), "train/loss", "val/loss", 1, 0)
KINDS = {k.name: k for k in (GAN, VAE, VQVAE)}


def _fit(kind: Kind, tmp_path: Path, model: L.LightningModule | None = None, **kwargs: Any) -> tuple[Any, L.Trainer]:
    model = model if model is not None else kind.module()
    run = trainer(tmp_path, **kwargs)
    run.fit(model, digits(kind.value_range, BATCH_SIZE))
    return model, run


def _assert_trained(kind: Kind, model: Any, run: L.Trainer, batches: int) -> None:
    """``batches`` training batches ran, every counter agrees, and the last training value is finite."""
    assert run.global_step == batches * kind.steps_per_batch
    if isinstance(model, GANModule):
        assert int(model.generator_steps) == batches
        assert int(model.images_seen) == batches * BATCH_SIZE
    assert math.isfinite(float(run.callback_metrics[kind.train_key]))


def _csv_rows(run: L.Trainer) -> list[dict[str, str]]:
    with open(Path(run.logger.log_dir) / "metrics.csv") as f:  # type: ignore[union-attr]
        return list(csv.DictReader(f))


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class _Count(Callback):
    """Counts validation runs (not the sanity check) and validation batches; records ``key`` after each run."""

    def __init__(self, key: str | None = None) -> None:
        self.validations = self.val_batches = 0
        self.key, self.values = key, []  # type: ignore[var-annotated]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations += 1
            if self.key is not None:
                self.values.append(float(trainer.callback_metrics[self.key]))

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.val_batches += not trainer.sanity_checking


# -- the cells ------------------------------------------------------------------------------------------------------
def cell_fast_dev_run(kind: Kind, tmp_path: Path) -> None:
    count = _Count()
    model, run = _fit(kind, tmp_path, fast_dev_run=True, callbacks=[count], enable_checkpointing=True)
    _assert_trained(kind, model, run, 1)
    assert (count.validations, count.val_batches) == (1, 1)
    assert not list(tmp_path.rglob("*.ckpt"))  # fast_dev_run writes no checkpoint


def cell_overfit_batches(kind: Kind, tmp_path: Path) -> None:
    seen: list[torch.Tensor] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
            seen.append(batch[0].clone())

    model, run = _fit(kind, tmp_path, overfit_batches=2, max_epochs=2, limit_train_batches=None, callbacks=[Record()])
    _assert_trained(kind, model, run, 4)
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3])  # the same two batches every epoch


def cell_val_check_interval(kind: Kind, tmp_path: Path) -> None:
    count = _Count()
    model, run = _fit(kind, tmp_path, limit_train_batches=4, val_check_interval=0.5, callbacks=[count])
    _assert_trained(kind, model, run, 4)
    assert count.validations == 2 and kind.val_key in run.callback_metrics


def cell_limit_batches(kind: Kind, tmp_path: Path) -> None:
    count = _Count()
    limits = dict(limit_train_batches=2, limit_val_batches=3, limit_predict_batches=2)
    model, run = _fit(kind, tmp_path, callbacks=[count], **limits)
    _assert_trained(kind, model, run, 2)
    assert count.val_batches == 3
    assert len(run.predict(model, digits(kind.value_range, BATCH_SIZE))) == 2  # type: ignore[arg-type]


def cell_max_steps(kind: Kind, tmp_path: Path) -> None:
    # 5 batches' worth of optimizer steps: the run stops there, in the middle of the 2nd epoch
    model, run = _fit(kind, tmp_path, max_steps=5 * kind.steps_per_batch, max_epochs=-1)
    _assert_trained(kind, model, run, 5)  # the last step's training values were logged too


def cell_max_time(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, max_time={"seconds": 0}, max_epochs=5)
    assert run.global_step == 0 and run.current_epoch == 0  # the time is up before the first batch
    if isinstance(model, GANModule):
        assert int(model.generator_steps) == 0 and int(model.images_seen) == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def cell_check_val_every_n_epoch(kind: Kind, tmp_path: Path) -> None:
    count = _Count()
    model, run = _fit(kind, tmp_path, max_epochs=3, check_val_every_n_epoch=2, callbacks=[count])
    _assert_trained(kind, model, run, 3 * BATCHES)
    assert count.validations == 1


def cell_log_every_n_steps(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, log_every_n_steps=1, logger=CSVLogger(tmp_path))
    _assert_trained(kind, model, run, BATCHES)
    steps = [row["step"] for row in _csv_rows(run) if row.get(kind.train_key)]
    assert len(steps) == BATCHES  # one row of training values every batch


def cell_checkpoint_val_metric(kind: Kind, tmp_path: Path) -> None:
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor=kind.val_key, save_top_k=1, save_last=True)
    count = _Count(kind.val_key)
    model, run = _fit(kind, tmp_path, max_epochs=3, callbacks=[count, ckpt], enable_checkpointing=True)
    _assert_trained(kind, model, run, 3 * BATCHES)
    assert len(count.values) == 3 and len(list((tmp_path / "ckpt").iterdir())) == 2  # the best and last.ckpt
    best_epoch = min(range(3), key=count.values.__getitem__)
    assert float(ckpt.best_model_score) == pytest.approx(count.values[best_epoch])  # type: ignore[arg-type]
    best = torch.load(ckpt.best_model_path, weights_only=False)
    assert best["global_step"] == (best_epoch + 1) * BATCHES * kind.steps_per_batch
    assert torch.load(ckpt.last_model_path, weights_only=False)["global_step"] == run.global_step


def cell_checkpoint_train_steps(kind: Kind, tmp_path: Path) -> None:
    every = 2 * kind.steps_per_batch  # every other batch
    ckpts = [
        ModelCheckpoint(dirpath=tmp_path / d, monitor=kind.train_key, every_n_train_steps=every, save_top_k=-1)
        for d in ("sparse", "dense")
    ]
    scores = []
    for ckpt, log_every in zip(ckpts, (50, 1), strict=True):
        kwargs = dict(limit_train_batches=6, limit_val_batches=0, log_every_n_steps=log_every)
        _fit(kind, tmp_path, callbacks=[ckpt], enable_checkpointing=True, **kwargs)
        scores.append({Path(p).name: float(v) for p, v in ckpt.best_k_models.items()})
    assert len(list((tmp_path / "sparse").iterdir())) == 3
    assert scores[0] == pytest.approx(scores[1], rel=1e-6)  # the value of each file's own step


def cell_early_stopping(kind: Kind, tmp_path: Path) -> None:
    # a threshold every value meets stops training after the first validation
    stop = EarlyStopping(monitor=kind.val_key, mode="min", stopping_threshold=1e9)
    model, run = _fit(kind, tmp_path, max_epochs=5, callbacks=[stop])
    _assert_trained(kind, model, run, BATCHES)
    assert stop.stopped_epoch == 0 and run.should_stop


def cell_lr_monitor(kind: Kind, tmp_path: Path) -> None:
    monitor = LearningRateMonitor(logging_interval="step")
    model, run = _fit(kind, tmp_path, callbacks=[monitor], logger=CSVLogger(tmp_path), log_every_n_steps=1)
    _assert_trained(kind, model, run, BATCHES)
    rows = _csv_rows(run)
    lrs = {k: float(v) for row in rows for k, v in row.items() if k.startswith("lr-") and v}
    # the GAN's keys name the player each optimizer trains
    expected = {"lr-Adam/generator": 2e-4, "lr-Adam-1/discriminator": 2e-4} if kind is GAN else {"lr-Adam": 1e-3}
    assert lrs == pytest.approx(expected)


def cell_model_summary(kind: Kind, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = kind.module()
    with caplog.at_level("INFO"):
        _fit(kind, tmp_path, model=model, callbacks=[ModelSummary(max_depth=2)], enable_model_summary=True)
    total = get_human_readable_count(sum(p.numel() for p in model.parameters())).strip()
    assert re.search(rf"{re.escape(total)}\s+Total params", caplog.text), caplog.text


def cell_rich_model_summary(kind: Kind, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rich")
    _fit(kind, tmp_path, callbacks=[RichModelSummary(max_depth=2)], enable_model_summary=True)
    assert "Total params" in capsys.readouterr().out


def cell_timer(kind: Kind, tmp_path: Path) -> None:
    timer = Timer()
    model, run = _fit(kind, tmp_path, callbacks=[timer])
    _assert_trained(kind, model, run, BATCHES)
    assert 0 < timer.time_elapsed("train") < 60 and timer.time_elapsed("validate") > 0


def cell_batch_size_finder(kind: Kind, tmp_path: Path) -> None:
    data = digits(kind.value_range, batch_size=2)
    finder = BatchSizeFinder(mode="power", init_val=2, max_trials=2, steps_per_trial=1)
    model = kind.module()
    trainer(tmp_path, callbacks=[finder]).fit(model, data)
    assert finder.optimal_batch_size == 4 and data.batch_size == 4  # 2 and 4 tried, no out-of-memory


def cell_deterministic(kind: Kind, tmp_path: Path) -> None:
    runs = [_fit(kind, tmp_path / str(i), deterministic=True) for i in range(2)]
    _assert_trained(kind, *runs[0], BATCHES)
    _assert_same_weights(_weights(runs[0][0]), _weights(runs[1][0]))


def _assert_precision_fit(kind: Kind, model: Any, run: L.Trainer, dtype: torch.dtype) -> None:
    _assert_trained(kind, model, run, BATCHES)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(float(run.callback_metrics[kind.val_key]))


def cell_bf16_mixed(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, precision="bf16-mixed")
    _assert_precision_fit(kind, model, run, torch.float32)  # autocast: the weights stay fp32


def _fp16_on_cpu() -> MixedPrecision:
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))


def cell_16_mixed(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, plugins=[_fp16_on_cpu()])
    _assert_precision_fit(kind, model, run, torch.float32)
    if isinstance(model, GANModule):
        assert int(model.skipped_steps) == 0


def cell_16_mixed_r1(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, model=kind.module(r1_gamma=1.0), plugins=[_fp16_on_cpu()])
    _assert_precision_fit(kind, model, run, torch.float32)
    assert int(model.skipped_steps) == 0


def cell_16_mixed_gp(kind: Kind, tmp_path: Path) -> None:
    model = kind.module(loss="wasserstein", gradient_penalty=10.0)
    model, run = _fit(kind, tmp_path, model=model, plugins=[_fp16_on_cpu()])
    _assert_precision_fit(kind, model, run, torch.float32)
    assert int(model.skipped_steps) == 0


def cell_bf16_true(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, precision="bf16-true")
    _assert_precision_fit(kind, model, run, torch.bfloat16)


def cell_64_true(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, precision="64-true")
    _assert_precision_fit(kind, model, run, torch.float64)


def _averaging_cell(kind: Kind, tmp_path: Path, callback: WeightAveraging) -> None:
    model, run = _fit(kind, tmp_path, callbacks=[callback])
    _assert_trained(kind, model, run, BATCHES)  # integer counters are counted, not averaged
    raw, _ = _fit(kind, tmp_path / "raw")
    floats = [k for k, v in _weights(model).items() if v.is_floating_point() and "weight" in k]
    assert floats and all(torch.isfinite(model.state_dict()[k]).all() for k in floats)
    assert any(not torch.equal(model.state_dict()[k], raw.state_dict()[k]) for k in floats)  # the average is in


def cell_ema_weight_averaging(kind: Kind, tmp_path: Path) -> None:
    _averaging_cell(kind, tmp_path, EMAWeightAveraging(decay=0.5))


def cell_weight_averaging(kind: Kind, tmp_path: Path) -> None:
    _averaging_cell(kind, tmp_path, WeightAveraging())


def cell_lr_find(kind: Kind, tmp_path: Path) -> None:
    # the finder's steps are training batches of the Trainer: it needs limit_train_batches >= num_training
    model, data, run = kind.module(), digits(kind.value_range, BATCH_SIZE), trainer(tmp_path, limit_train_batches=20)
    if kind is GAN:  # two optimizers under manual optimization: no single learning rate to find
        with pytest.raises(Exception, match="GANModule"):
            Tuner(run).lr_find(model, datamodule=data, num_training=20)
        return
    result = Tuner(run).lr_find(model, datamodule=data, num_training=20, early_stop_threshold=None)
    assert result is not None and len(result.results["lr"]) == 20 and result.suggestion() is not None
    run.fit(model, data)  # the optimizer is built with the suggested rate
    assert model.optimizers().param_groups[0]["lr"] == pytest.approx(result.suggestion())


def cell_lr_finder_callback(kind: Kind, tmp_path: Path) -> None:
    finder = LearningRateFinder(num_training_steps=20, early_stop_threshold=None)
    model = kind.module()
    if kind is GAN:
        with pytest.raises(Exception, match="GANModule"):
            _fit(kind, tmp_path, model=model, callbacks=[finder], limit_train_batches=20)
        return
    _fit(kind, tmp_path, model=model, callbacks=[finder], limit_train_batches=20)
    assert finder.optimal_lr is not None and finder.optimal_lr.suggestion() is not None
    assert model.optimizers().param_groups[0]["lr"] == pytest.approx(finder.optimal_lr.suggestion())


def cell_to_torchscript(kind: Kind, tmp_path: Path) -> None:
    model, _ = _fit(kind, tmp_path)
    x = kind.input_sample()
    path = tmp_path / "model.pt"
    model.to_torchscript(path, method="trace", example_inputs=x)
    loaded = torch.jit.load(path)
    model.eval()
    expected, got = model(x), loaded(x)
    i = kind.deterministic_output
    expected, got = (expected, got) if i is None else (expected[i], got[i])
    torch.testing.assert_close(got, expected)


def cell_to_onnx(kind: Kind, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    model, _ = _fit(kind, tmp_path)
    x = kind.input_sample()
    path = tmp_path / "model.onnx"
    model.to_onnx(path, x)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    i = kind.deterministic_output
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[i or 0]
    model.eval()
    expected = model(x)
    expected = expected if i is None else expected[i]
    torch.testing.assert_close(torch.from_numpy(got), expected.detach(), rtol=1e-4, atol=1e-5)


def cell_load_from_checkpoint(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path)
    run.save_checkpoint(tmp_path / "model.ckpt")
    loaded = kind.cls.load_from_checkpoint(tmp_path / "model.ckpt", **kind.nets())
    assert type(loaded) is kind.cls
    _assert_same_weights(_weights(loaded), _weights(model))


def cell_resume_epoch_end(kind: Kind, tmp_path: Path) -> None:
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _fit(kind, tmp_path / "first", callbacks=[ckpt], enable_checkpointing=True)
    resumed, run = kind.module(), trainer(tmp_path / "second", max_epochs=2)
    run.fit(resumed, digits(kind.value_range, BATCH_SIZE), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    _assert_trained(kind, resumed, run, 2 * BATCHES)
    straight, _ = _fit(kind, tmp_path / "straight", max_epochs=2)
    _assert_same_weights(_weights(resumed), _weights(straight))


def cell_validate_test_predict(kind: Kind, tmp_path: Path) -> None:
    model, run = _fit(kind, tmp_path, limit_test_batches=2, limit_predict_batches=2)
    data = digits(kind.value_range, BATCH_SIZE)
    val = run.validate(model, data, verbose=False)[0]
    test = run.test(model, data, verbose=False)[0]
    assert kind.val_key in val and kind.val_key.replace("val/", "test/") in test
    assert all(math.isfinite(v) for v in (val | test).values())
    predictions = run.predict(model, data)
    assert len(predictions) == 2  # type: ignore[arg-type]
    tensors = [v for v in predictions[0].values() if isinstance(v, torch.Tensor)]  # type: ignore[index, union-attr]
    assert tensors and tensors[0].shape[0] == BATCH_SIZE and torch.isfinite(tensors[0]).all()


def cell_gradient_clip(kind: Kind, tmp_path: Path) -> None:
    if kind is GAN:  # Lightning refuses it under manual optimization: the error names GANModule's own option
        with pytest.raises(ValueError, match=r"GANModule\(generator_clip_norm="):
            _fit(kind, tmp_path, gradient_clip_val=1.0)
        return
    model, run = _fit(kind, tmp_path, gradient_clip_val=1e-6)
    _assert_trained(kind, model, run, BATCHES)


def cell_accumulate_grad_batches(kind: Kind, tmp_path: Path) -> None:
    if kind is GAN:
        with pytest.raises(ValueError, match=r"GANModule\(accumulate_grad_batches=2\)"):
            _fit(kind, tmp_path, accumulate_grad_batches=2)
        return
    model, run = _fit(kind, tmp_path, accumulate_grad_batches=2, limit_train_batches=4)
    _assert_trained(kind, model, run, 2)  # two optimizer steps for four batches


def cell_swa(kind: Kind, tmp_path: Path) -> None:
    if kind is GAN:
        with pytest.raises(ValueError, match=r"GANModule\(ema_decay="):
            _fit(kind, tmp_path, callbacks=[StochasticWeightAveraging(swa_lrs=1e-3)])
        return
    model, run = _fit(kind, tmp_path, max_epochs=2, callbacks=[StochasticWeightAveraging(swa_lrs=1e-3)])
    _assert_trained(kind, model, run, 2 * BATCHES)


# -- the matrix -----------------------------------------------------------------------------------------------------
CELLS: dict[str, Callable[..., None]] = {
    name.removeprefix("cell_"): fn for name, fn in list(globals().items()) if name.startswith("cell_")
}
ONLY = {  # cells that exist for some kinds only
    "batch_size_finder": {"vae", "vqvae"},
    "16_mixed_r1": {"gan"},
    "16_mixed_gp": {"gan"},
}


XFAIL: dict[tuple[str, str], pytest.MarkDecorator] = {}


def _params() -> list[Any]:
    params = []
    for cell in CELLS:
        for kind in KINDS:
            if kind not in ONLY.get(cell, set(KINDS)):
                continue
            marks = [XFAIL[(kind, cell)]] if (kind, cell) in XFAIL else []
            params.append(pytest.param(kind, cell, id=f"{kind}-{cell}", marks=marks))
    return params


@pytest.mark.parametrize(("kind", "cell"), _params())
def test_trainer_matrix(kind: str, cell: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    fn = CELLS[cell]
    fixtures = {name: request.getfixturevalue(name) for name in ("caplog", "capsys") if name in fn.__code__.co_varnames}
    fn(KINDS[kind], tmp_path, **fixtures)
