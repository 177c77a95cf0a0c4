from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import onnxruntime
import pytest
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

import lit_gen.export as export
from lit_gen.cli import LitGenCLI
from lit_gen.export import check_parity, export_generator, generator_of
from lit_gen.nets import DCGANGenerator, MLPGenerator

ROOT = Path(__file__).resolve().parents[1]
NETS: dict[str, Callable[[], nn.Module]] = {
    "dcgan": lambda: DCGANGenerator(latent_dim=8, image_shape=(1, 28, 28), width=8),
    "mlp": lambda: MLPGenerator(latent_dim=4, image_shape=(2,), hidden=(16,), output_activation="none"),
}


class TinyConditional(nn.Module):
    """``(z (B, 4), labels (B,)) -> (B, 2, 4, 4)`` through a class embedding concatenated to ``z``."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = 4, num_classes
        self.embed = nn.Embedding(num_classes, 4)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 32), nn.Tanh())

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.net(torch.cat([z, self.embed(labels)], dim=1)).view(z.shape[0], 2, 4, 4)


def trained_batch_norm(net: nn.Module, *inputs: Tensor) -> nn.Module:
    """``net`` after one train-mode forward pass, so its batch-norm running statistics are not the initial ones."""
    with torch.no_grad():
        net.train()(*inputs)
    return net


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_parity_on_another_batch_size(name: str, fmt: str, tmp_path: Path) -> None:
    net = NETS[name]()
    latent = net.latent_dim
    trained_batch_norm(net, torch.randn(16, latent))
    path = export_generator(net, tmp_path / f"g{export.SUFFIXES[fmt]}", fmt, latent_dim=latent, batch_size=4)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]  # one file, no external data
    assert check_parity(net, path, fmt, latent_dim=latent, batch_size=7) <= 1e-5
    assert check_parity(net, path, fmt, latent_dim=latent, batch_size=2, seed=3) <= 1e-5


def test_onnx_graph_has_named_inputs_and_a_dynamic_batch(tmp_path: Path) -> None:
    net = NETS["dcgan"]()
    path = export_generator(net, tmp_path / "g.onnx", "onnx", latent_dim=8, batch_size=4)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("z", ["batch", 8])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("images", ["batch", 1, 28, 28])]
    for batch in (1, 5):
        z = torch.randn(batch, 8)
        (images,) = session.run(None, {"z": z.numpy()})
        with torch.no_grad():
            expected = net.eval()(z).numpy()
        assert images.shape == (batch, 1, 28, 28)
        np.testing.assert_allclose(images, expected, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_conditional_generator_takes_labels(fmt: str, tmp_path: Path) -> None:
    net = trained_batch_norm(TinyConditional(), torch.randn(16, 4), torch.arange(16) % 3)
    path = export_generator(net, tmp_path / f"c{export.SUFFIXES[fmt]}", fmt, latent_dim=4, num_classes=3)
    assert check_parity(net, path, fmt, latent_dim=4, num_classes=3, batch_size=7) <= 1e-5
    # the labels are an input of the exported net, not constants of the trace: other labels, other images
    z = torch.randn(6, 4).repeat(3, 1)
    labels = torch.arange(3).repeat_interleave(6)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [(i.name, i.type) for i in session.get_inputs()] == [("z", "tensor(float)"), ("labels", "tensor(int64)")]
        images = torch.from_numpy(session.run(None, {"z": z.numpy(), "labels": labels.numpy()})[0])
    else:
        images = torch.jit.load(str(path))(z, labels).detach()
    with torch.no_grad():
        expected = net.eval()(z, labels)
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    assert (images[:6] - images[6:12]).abs().max() > 1e-3 and (images[6:12] - images[12:]).abs().max() > 1e-3


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_callers_net_is_left_in_train_mode_and_unchanged(fmt: str, tmp_path: Path) -> None:
    net = NETS["dcgan"]().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = export_generator(net, tmp_path / f"g{export.SUFFIXES[fmt]}", fmt, latent_dim=8)
    check_parity(net, path, fmt, latent_dim=8)
    assert all(m.training for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no batch-norm statistics updated either


def test_parity_fails_with_the_figure_when_the_net_changed(tmp_path: Path) -> None:
    net = NETS["mlp"]()
    path = export_generator(net, tmp_path / "g.onnx", "onnx", latent_dim=4)
    with torch.no_grad():
        net.net[0][-1].bias += 0.5  # the output layer's bias: every output moves by exactly 0.5
    diff = check_parity(net, path, "onnx", latent_dim=4, atol=1.0)
    assert diff == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ValueError, match=r"differs from the generator by 0\.5 \(max abs\) > atol=1e-05"):
        check_parity(net, path, "onnx", latent_dim=4)


def test_bad_arguments(tmp_path: Path) -> None:
    net = NETS["mlp"]()
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        export_generator(net, tmp_path / "g.onnx", "onnx", latent_dim=4, batch_size=1)
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_generator(net, tmp_path / "g.tflite", "tflite", latent_dim=4)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_parity(net, tmp_path / "missing.pt", "torchscript", latent_dim=4)
    path = export_generator(net, tmp_path / "g.onnx", "onnx", latent_dim=4)
    with pytest.raises(ValueError, match=r"takes inputs \['z'\] but 2 were given"):
        check_parity(net, path, "onnx", latent_dim=4, num_classes=3)


def test_missing_onnx_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(export, "find_spec", lambda name: None if name == "onnxscript" else object())
    with pytest.raises(ImportError, match=r"needs onnxscript: pip install 'lit-gen\[export\]'"):
        export_generator(NETS["mlp"](), tmp_path / "g.onnx", "onnx", latent_dim=4)
    path = export_generator(NETS["mlp"](), tmp_path / "g.pt", "torchscript", latent_dim=4)  # needs neither
    assert path.is_file()


def test_generator_of_prefers_the_sampling_generator() -> None:
    net, other = NETS["mlp"](), NETS["mlp"]()
    assert generator_of(net) is net
    assert generator_of(SimpleNamespace(generator=net)) is net  # a GANModule before it had `sampling_generator`
    ema = AveragedModel(other)
    assert generator_of(SimpleNamespace(generator=net, sampling_generator=ema)) is ema.module
    assert generator_of(SimpleNamespace(generator=net, sampling_generator=net)) is net


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_script", ROOT / "scripts" / "export.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_exports_a_cli_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = LitGenCLI(
        args=[
            "fit",
            "--config",
            str(ROOT / "configs" / "gan" / "digits.yaml"),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false",
        ]
    )
    ckpt = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and tmp_path in ckpt.parents
    capsys.readouterr()
    load_script().main(["--ckpt", str(ckpt), "--format", "torchscript", "onnx", "--out", str(tmp_path / "gan")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["torchscript", str(tmp_path / "gan.pt")],
        ["onnx", str(tmp_path / "gan.onnx")],
    ]
    diffs = [float(re.search(r"max abs difference (\S+)", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert all(0 <= d <= 1e-5 for d in diffs)
    # the MLP generator of configs/gan/digits.yaml: 32 -> 256 -> 256 -> 64 floats, ~0.37 MB in either format
    weights = 4 * (32 * 256 + 256 + 256 * 256 + 256 + 256 * 64 + 64)
    for path in (tmp_path / "gan.pt", tmp_path / "gan.onnx"):
        assert weights < path.stat().st_size < weights + 30_000


def test_script_reports_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["--ckpt", str(tmp_path / "nope.ckpt")])
    assert exit_info.value.code == 2
    assert f"checkpoint {tmp_path / 'nope.ckpt'} does not exist" in capsys.readouterr().err
