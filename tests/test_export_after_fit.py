"""``LightningModule.to_torchscript(method="trace")`` and ``to_onnx`` after ``trainer.fit`` with a DataModule: Lightning
sends the input sample through the DataModule's ``on_after_batch_transfer``, which must leave it as it is (it only
converts its own ``(uint8 images, labels)`` batches)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor

from lit_gen import DigitsDataModule
from tests.helpers import digits, tiny_gan, tiny_vae, trainer
from tests.test_resume_epoch_end import tiny_vqvae

MODULES: dict[str, tuple[Callable[[], L.LightningModule], tuple[float, float], Callable[[], Tensor]]] = {
    # name: (builder, value_range, an input sample of forward: z for the GAN, images for the autoencoders)
    "gan": (tiny_gan, (-1.0, 1.0), lambda: torch.randn(3, 4)),
    "vae": (tiny_vae, (0.0, 1.0), lambda: torch.rand(3, 1, 8, 8)),
    "vqvae": (tiny_vqvae, (0.0, 1.0), lambda: torch.rand(3, 1, 8, 8)),
}


def leaves(output: Any) -> list[Tensor]:
    """The tensors of a forward's output (a tensor or nested named tuples), in order."""
    if isinstance(output, Tensor):
        return [output]
    return [t for item in output for t in leaves(item)]


def fitted(name: str, tmp_path: Path) -> tuple[L.LightningModule, Tensor]:
    build, value_range, sample = MODULES[name]
    module = build()
    trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(module, datamodule=digits(value_range))
    assert module.trainer.datamodule is not None  # still attached: Lightning applies its batch-transfer hooks
    return module.eval(), sample()


@pytest.mark.parametrize("name", list(MODULES))
def test_to_torchscript_trace_after_fit_matches_forward(name: str, tmp_path: Path) -> None:
    module, x = fitted(name, tmp_path)
    traced = module.to_torchscript(method="trace", example_inputs=x)
    torch.manual_seed(1)  # the VAE's forward draws z
    expected = leaves(module(x))
    torch.manual_seed(1)
    got = leaves(traced(x))
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["gan", "vqvae"])  # the VAE's forward samples (aten.randn): no ONNX export for that
def test_to_onnx_after_fit_matches_forward(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    module, x = fitted(name, tmp_path)
    module.to_onnx(tmp_path / "model.onnx", x)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    expected = leaves(module(x))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b.detach(), rtol=1e-5, atol=1e-5)


def test_the_datamodule_converts_only_its_own_batches() -> None:
    dm = DigitsDataModule(value_range=(-1.0, 1.0))
    images, labels = torch.tensor([[[[0, 255]]]], dtype=torch.uint8), torch.tensor([3])
    converted, same_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert converted.tolist() == [[[[-1.0, 1.0]]]] and same_labels is labels
    z = torch.randn(2, 4)
    assert dm.on_after_batch_transfer(z, 0) is z  # a tensor (e.g. an export's input sample), not a batch
    pair = (torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    assert dm.on_after_batch_transfer(pair, 0) is pair  # floats: not this DataModule's uint8 batch
